"""The LSTSD method's own cost per step, isolated from the network: loss + bank read/write vs plain CE.

Both variants run on the same logits (batch B × C classes, a bank of N samples) and are timed in
alternating blocks; the difference is what LSTSD adds to a training step (compare it with the
step time of your network: ~150 ms for ResNet-20 at batch 128 on 2 CPU cores).

    python benchmarks/method_overhead.py [--samples 50000] [--classes 100] [--batch-size 128] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from lstsd import LSTSD


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=50000)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--blocks", type=int, default=7)
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    method = LSTSD(args.samples, args.classes, generation_epochs=1, validate=False, device=device)
    method.start_epoch(0)
    method.end_epoch()
    method.start_epoch(1)            # second mini-generation: both distillation terms active
    logits = torch.randn(args.batch_size, args.classes, device=device, requires_grad=True)
    targets = torch.randint(0, args.classes, (args.batch_size,), device=device)
    permutation = torch.randperm(args.samples, device=device)

    def lstsd_step(k: int) -> None:
        idx = permutation[(k * args.batch_size) % (args.samples - args.batch_size):][:args.batch_size]
        method.loss(logits, targets, idx).backward()

    def ce_step(k: int) -> None:
        F.cross_entropy(logits.float(), targets).backward()

    times: dict[str, list[float]] = {"lstsd": [], "cross-entropy": []}
    for block in range(args.blocks + 1):
        for name, step in (("lstsd", lstsd_step), ("cross-entropy", ce_step)):
            sync()
            start = time.perf_counter()
            for k in range(args.iterations):
                step(k)
            sync()
            if block > 0:   # block 0 warms up
                times[name].append((time.perf_counter() - start) / args.iterations)
    lstsd_ms, ce_ms = (1000 * statistics.median(times[n]) for n in ("lstsd", "cross-entropy"))
    print(f"\nN={args.samples}, C={args.classes}, batch {args.batch_size}, {device}, {torch.get_num_threads()} threads\n")
    print("| loss | median ms/step |\n|---|---|")
    print(f"| cross-entropy | {ce_ms:.3f} |\n| LSTSD (CE + 2 KL + 2 bank reads + 2 bank writes) | {lstsd_ms:.3f} |")
    print(f"\nLSTSD adds {lstsd_ms - ce_ms:.3f} ms per step")


if __name__ == "__main__":
    main()
