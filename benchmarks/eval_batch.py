"""Evaluation speed against the evaluation batch size (why ``eval_batch_size`` defaults to 128).

A forward pass over the same images in batches of each size, interleaved over repeats, no gradients,
eval mode; the model of the quick preset (ResNet-8, width 16, 28x28 grey images) by default.

    OMP_NUM_THREADS=1 python benchmarks/eval_batch.py [--images 4000] [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from lstsd.harness.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--sizes", default="1000,256,128,64", help="comma-separated batch sizes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = build_model("resnet", num_classes=10, depth=8, width=16, in_channels=1).eval()
    x = torch.randn(args.images, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    sizes = [int(s) for s in args.sizes.split(",")]
    seconds: dict[int, list[float]] = {b: [] for b in sizes}
    with torch.inference_mode():
        model(x[:sizes[0]])                                  # warm-up
        for _ in range(args.repeats):
            for b in sizes:
                start = time.perf_counter()
                for i in range(0, len(x), b):
                    model(x[i:i + b])
                seconds[b].append(time.perf_counter() - start)
    base = statistics.median(seconds[sizes[0]])
    print(f"ResNet-8 (width 16), {args.images} images 28x28, {args.threads} thread(s), median of {args.repeats}\n")
    print(f"| eval batch | seconds | speed vs batch {sizes[0]} |\n|---:|---:|---:|")
    for b in sizes:
        median = statistics.median(seconds[b])
        print(f"| {b} | {median:.2f} | {base / median:.2f}× |")


if __name__ == "__main__":
    main()
