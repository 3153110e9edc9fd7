"""What keeping the banks identical costs under DDP: one step's row exchange (lstsd.distributed)
against one DDP training step of ResNet-20, timed in alternating blocks in the same processes.

    OMP_NUM_THREADS=1 torchrun --nproc_per_node=2 benchmarks/sync_cost.py [--batch-size 128] [--classes 100]

``--batch-size`` is the global batch (each process takes its share); the exchange sends each
process's rows of fp16 soft targets and their indices in one all-gather (gloo on CPU, nccl on CUDA).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

from lstsd.distributed import RowExchange
from lstsd.harness.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--samples", type=int, default=50000)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=6)
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{rank}" if cuda else "cpu")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    local = args.batch_size // world

    model = torch.nn.parallel.DistributedDataParallel(
        build_model("resnet20", num_classes=args.classes).to(device), device_ids=[rank] if cuda else None)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(local, 3, 32, 32, device=device)
    y = torch.randint(0, args.classes, (local,), device=device)
    rows = torch.softmax(torch.randn(local, args.classes, device=device), 1).half()
    exchange = RowExchange()
    generator = torch.Generator().manual_seed(rank)

    def train_step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def exchange_step() -> None:
        idx = torch.randint(0, args.samples, (local,), generator=generator).to(device)
        exchange(idx, rows)

    times: dict[str, list[float]] = {"DDP step of ResNet-20": [], "bank row exchange": []}
    for block in range(args.blocks + 1):
        for name, step in (("DDP step of ResNet-20", train_step), ("bank row exchange", exchange_step)):
            dist.barrier()
            sync()
            start = time.perf_counter()
            for _ in range(args.steps if name.startswith("DDP") else 20 * args.steps):
                step()
            sync()
            per = (time.perf_counter() - start) / (args.steps if name.startswith("DDP") else 20 * args.steps)
            if block > 0:
                times[name].append(per)
    if rank == 0:
        ms = {k: 1000 * statistics.median(v) for k, v in times.items()}
        print(f"\n{world} processes ({'nccl' if cuda else 'gloo'}), global batch {args.batch_size}, C={args.classes}, "
              f"{torch.get_num_threads()} thread(s) each, {args.blocks} interleaved blocks\n")
        print("| per step | median ms |\n|---|---:|")
        for k, v in ms.items():
            print(f"| {k} | {v:.2f} |")
        ratio = ms["bank row exchange"] / ms["DDP step of ResNet-20"]
        print(f"\nThe exchange is {100 * ratio:.2f}% of a ResNet-20 DDP step.")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
