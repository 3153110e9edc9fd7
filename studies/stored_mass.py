"""How much of each per-token teacher a run's top-k banks hold (docs/results.md, language models).

    .venv/bin/python studies/stored_mass.py runs/compare-lm-quick/lstsd-seed0

Reads the run's two kept checkpoints (``checkpoint.prev.pt``, ``checkpoint.pt``: the banks as they
were after those epochs) and prints, per bank, the mean and median share of the teacher's probability
its stored tokens hold (a top-k bank spreads the rest uniformly over the vocabulary; a sampled bank
holds all of it) and the mean probability of its first token. The checkpoints are memory-mapped and
their digests not checked: only the banks are read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    for name in ("checkpoint.prev.pt", "checkpoint.pt"):
        path = args.run_dir / name
        if not path.is_file():
            continue
        state = torch.load(path, map_location="cpu", weights_only=False, mmap=True)["state"]
        banks = sorted({key.split(".")[0] for key in state["method"] if key.endswith("_bank.values")})
        for bank in banks:
            values = state["method"][f"{bank}.values"].float()
            recorded = state["method"][f"{bank}.recorded"]
            stored = values[recorded].sum(dim=1)
            print(f"after epoch {state['epoch'] + 1}, {bank}: stored mass mean {100 * stored.mean():.1f}%, "
                  f"median {100 * stored.median():.1f}%, first token {100 * values[recorded, 0].mean():.1f}% "
                  f"({int(recorded.sum())} tokens)")


if __name__ == "__main__":
    main()
