"""Harness epoch time vs a minimal hand-written loop on the same model, data and precision.

Both variants train the same network (vanilla cross-entropy, SGD, the same augmentation on
tensors) for one epoch at a time; the epochs are interleaved A, B, A, B, ... in one process so that
both see the same machine load, and the table reports medians and the ratio hand/harness
(1.00 = no overhead; the goal is >= 0.97).

    python benchmarks/harness_overhead.py [--model resnet20] [--samples 2560] [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from lstsd.harness.config import TrainConfig
from lstsd.harness.data import random_crop_flip
from lstsd.harness.trainer import Progress, Trainer, autocast


def hand_written_epoch(model, optimizer, x_all, y_all, batch_size, device, precision, generator) -> None:
    """What a user would write: permute, slice, augment, forward, backward, step."""
    model.train()
    order = torch.randperm(x_all.shape[0], generator=generator).to(device)
    for start in range(0, x_all.shape[0], batch_size):
        idx = order[start:start + batch_size]
        x = random_crop_flip(x_all[idx], padding=4).contiguous(memory_format=torch.channels_last)
        with autocast(device, precision):
            loss = F.cross_entropy(model(x).float(), y_all[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--samples", type=int, default=2560, help="training samples per epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="epochs per variant (after one warm-up each)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(dataset=args.dataset, train_subset=args.samples, model=args.model, method="vanilla",
                          epochs=1000, batch_size=args.batch_size, device=args.device, precision=args.precision,
                          progress="none", run_dir=tmp)
        harness = Trainer(cfg, log=None)
        device, precision = harness.device, harness.precision
        # The hand-written loop gets its own copy of the same network and data.
        hand_model = copy.deepcopy(harness.model)
        hand_opt = torch.optim.SGD(hand_model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
        x_all = harness.task.data.train.features.to(device)
        y_all = harness.task.data.train.labels.to(device)
        generator = torch.Generator().manual_seed(0)
        quiet = Progress("none")

        times: dict[str, list[float]] = {"harness": [], "hand-written": []}
        for epoch in range(args.repeats + 1):          # epoch 0 warms both up and is discarded
            for name in ("harness", "hand-written"):
                start = time.perf_counter()
                if name == "harness":
                    harness.train_epoch(epoch, quiet)
                else:
                    hand_written_epoch(hand_model, hand_opt, x_all, y_all, args.batch_size, device, precision,
                                       generator)
                if epoch > 0:
                    times[name].append(time.perf_counter() - start)

    steps = harness.steps_per_epoch
    print(f"\n{args.model} on {args.dataset}, {args.samples} samples = {steps} steps/epoch, batch {args.batch_size}, "
          f"{device}, {precision}, {torch.get_num_threads()} threads, {args.repeats} interleaved epochs each\n")
    print("| variant | median s/epoch | ms/step |")
    print("|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.3f} | {1000 * median / steps:.1f} |")
    ratios = [h / m for h, m in zip(times["hand-written"], times["harness"])]
    print(f"\nratio hand-written / harness (per interleaved pair): median {statistics.median(ratios):.3f}, "
          f"min {min(ratios):.3f}, max {max(ratios):.3f}  (goal >= 0.97)")


if __name__ == "__main__":
    main()
