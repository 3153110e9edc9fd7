"""The LSTSD method's own cost per step, isolated from the network: loss + bank reads/writes vs plain CE.

Every variant runs on the same logits (batch B × C classes, banks of N samples), in the heaviest
epoch (both KL terms, both banks written), timed in alternating blocks; the difference to
cross-entropy is what LSTSD adds to a training step (compare it with your network's step time:
~150 ms for ResNet-20 at batch 128 on 2 CPU cores).

    python benchmarks/method_overhead.py [--samples 50000] [--classes 100] [--batch-size 128]
        [--variants dense,topk10,topk10-cpu] [--device cpu|cuda]

Variants: ``dense`` (fp16 N × C banks), ``topkK`` (top-k banks with k = K), a ``-cpu`` suffix for
banks kept in (pinned) host memory while the logits are on ``--device`` (on a CPU-only machine
that is the same path as without the suffix).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from lstsd import LSTSD


def bank_settings(variant: str) -> dict[str, Any]:
    name, _, where = variant.partition("-")
    settings: dict[str, Any] = {"bank_device": "cpu"} if where == "cpu" else {}
    if name.startswith("topk"):
        settings.update(bank_format="topk", bank_topk=int(name.removeprefix("topk")))
    elif name != "dense":
        raise SystemExit(f"unknown variant {variant!r}: use dense, topkK, with an optional -cpu suffix")
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=50000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--variants", default="dense", help="comma-separated: dense, topkK, topkK-cpu")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--blocks", type=int, default=7)
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    logits = torch.randn(args.batch_size, args.classes, device=device, requires_grad=True)
    targets = torch.randint(0, args.classes, (args.batch_size,), device=device)
    permutation = torch.randperm(args.samples, device=device)

    def lstsd_step(method: LSTSD) -> Callable[[int], None]:
        def step(k: int) -> None:
            idx = permutation[(k * args.batch_size) % (args.samples - args.batch_size):][:args.batch_size]
            method.loss(logits, targets, idx).backward()
        return step

    steps: dict[str, Callable[[int], None]] = {
        "cross-entropy": lambda k: F.cross_entropy(logits.float(), targets).backward()}
    for variant in args.variants.split(","):
        settings = bank_settings(variant)
        # Banks in host memory take no device= (LSTSD refuses device="cuda" with bank_device="cpu").
        method = LSTSD(args.samples, args.classes, generation_epochs=1, validate=False,
                       device=None if "bank_device" in settings else device, **settings)
        method.start_epoch(0)
        method.end_epoch()
        method.start_epoch(1)            # second mini-generation: both distillation terms active
        steps[f"lstsd, {variant} banks ({method.short_term_bank.nbytes_per_sample()} B/sample each)"] = \
            lstsd_step(method)

    times: dict[str, list[float]] = {name: [] for name in steps}
    for block in range(args.blocks + 1):
        for name, step in steps.items():
            sync()
            start = time.perf_counter()
            for k in range(args.iterations):
                step(k)
            sync()
            if block > 0:   # block 0 warms up
                times[name].append((time.perf_counter() - start) / args.iterations)
    ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
    ce = ms["cross-entropy"]
    print(f"\nN={args.samples}, C={args.classes}, batch {args.batch_size}, {device}, "
          f"{torch.get_num_threads()} threads, {args.blocks} interleaved blocks of {args.iterations} steps\n")
    print("| loss | median ms/step | added to a step |\n|---|---:|---:|")
    for name, value in ms.items():
        print(f"| {name} | {value:.3f} | {'—' if value is ce else f'{value - ce:+.3f} ms'} |")


if __name__ == "__main__":
    main()
