"""The 3-seed figures of lm-study's last two arms (docs/results.md, "Top-8 targets on all 3 seeds" and
"The pretrained long-term teacher (ours) on all 3 seeds").

The study's first 15 runs were lost with a checkout (docs/results.md, "The runs made again"), so these
arms' earlier seeds survive only as the committed figures written from them; the later seeds are read
from the kept runs. Two seeds' values are fixed by their mean and sample std (m ± s/√2), which is all
the 3-seed mean, std and paired t need.

    .venv/bin/python studies/lm_study_combine.py [RUNS]      (default studies/results/lm-study)
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path


def final(runs: Path, run: str) -> dict[str, float]:
    return json.loads((runs / run / "results.json").read_text())["final"]


def best(runs: Path, run: str) -> float:
    return min(json.loads(line)["test_loss"] for line in (runs / run / "metrics.jsonl").read_text().splitlines())


def two(mean: float, std: float) -> list[float]:
    """The two values whose mean and sample std these are."""
    return [mean - std / math.sqrt(2), mean + std / math.sqrt(2)]


def paired(diffs: list[float]) -> str:
    """mean ± std, seeds better (< 0), paired t and its two-sided p with 2 degrees of freedom."""
    mean, std = statistics.fmean(diffs), statistics.stdev(diffs)
    t = mean / (std / math.sqrt(len(diffs)))
    p = 1 - abs(t) / math.sqrt(t * t + 2)          # Student's t with 2 degrees of freedom, closed form
    better = sum(d < 0 for d in diffs)
    return f"{mean:+.3f} ± {std:.3f}, {better}/{len(diffs)} better, t = {t:+.1f}, p = {p:.4f}"


def main(runs: Path) -> None:
    v = {s: final(runs, f"vanilla-seed{s}") for s in (1, 2)}
    # Top-8: seed 0 from its committed table (final 4.250 against vanilla's 3.653; probe +0.121).
    topk = {s: final(runs, f"lstsd-topk-seed{s}") for s in (1, 2)}
    def later(key: str) -> list[float]:   # top-8 minus vanilla on seeds 1 and 2
        return [topk[s][key] - v[s][key] for s in (1, 2)]
    print("lstsd-topk, final - vanilla:", paired([4.250 - 3.653] + later("test_loss")))
    print("lstsd-topk, probe - vanilla:", paired([0.121] + later("probe_loss")))
    finals = [4.250] + [topk[s]["test_loss"] for s in (1, 2)]
    print(f"lstsd-topk, final: {statistics.fmean(finals):.3f} ± {statistics.stdev(finals):.3f}")
    # Pretrained long-term teacher: seeds 0-1 from their committed table (final 3.294 ± 0.005;
    # final - vanilla -0.418 ± 0.080; best - vanilla's best +0.509 ± 0.017; probes 4.739 / 4.738
    # against vanilla's 4.923 / 4.940).
    pre = final(runs, "lstsd-pretrained-seed2")
    print("lstsd-pretrained, final - vanilla:", paired(two(-0.418, 0.080) + [pre["test_loss"] - v[2]["test_loss"]]))
    print("lstsd-pretrained, best - vanilla's best:",
          paired(two(0.509, 0.017) + [best(runs, "lstsd-pretrained-seed2") - best(runs, "vanilla-seed2")]))
    print("lstsd-pretrained, probe - vanilla:",
          paired([4.739 - 4.923, 4.738 - 4.940, pre["probe_loss"] - v[2]["probe_loss"]]))
    finals = two(3.294, 0.005) + [pre["test_loss"]]
    print(f"lstsd-pretrained, final: {statistics.fmean(finals):.3f} ± {statistics.stdev(finals):.3f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "results" / "lm-study")
