"""LSTSD in your own DDP loop: the method object and a DistributedSampler over an IndexedDataset.

    torchrun --nproc_per_node=2 examples/ddp_loop.py [--epochs 9] [--bank-format dense|topk]

Nothing else changes: when a process group is initialised, the method exchanges each step's
soft targets between ranks in one collective, so every rank keeps the same whole banks (the
script checks that at the end). gloo on CPU, nccl on CUDA. Runs in seconds on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
import torch.distributed as dist
from sklearn.datasets import load_digits
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

import lstsd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--bank-format", default="dense", choices=["dense", "topk"])
    args = parser.parse_args()

    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(1)   # one core per rank: two 2-thread processes on 2 cores crawl
    torch.manual_seed(0)           # the same initial weights on every rank (DDP also broadcasts them)

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    train_set = lstsd.IndexedDataset(TensorDataset(x, torch.tensor(digits.target)))
    sampler = DistributedSampler(train_set, shuffle=True, seed=0)
    loader = DataLoader(train_set, batch_size=32, sampler=sampler)

    model = DistributedDataParallel(nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)).to(device))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    topk = {"bank_format": "topk", "bank_topk": 3} if args.bank_format == "topk" else {}
    # The method is not part of the DDP module: DDP would broadcast its banks at every forward.
    method = lstsd.LSTSD(num_samples=len(train_set), num_classes=10, generation_epochs=3, **topk)

    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        method.start_epoch(epoch)
        for xb, yb, idx in loader:
            xb, yb, idx = xb.to(device), yb.to(device), idx.to(device)
            loss = method.loss(model(xb), yb, idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
        method.end_epoch()
        if rank == 0:
            parts = {k: round(v.item(), 4) for k, v in method.loss_components().items()}
            print(f"epoch {epoch + 1}/{args.epochs}  last loss {parts}", flush=True)

    # Every rank holds the same banks: compare a checksum of each tensor across ranks.
    sums = torch.stack([t.double().sum() for t in method.state_dict().values() if isinstance(t, torch.Tensor)])
    gathered = [torch.zeros_like(sums) for _ in range(world)]
    dist.all_gather(gathered, sums.to(device))
    if rank == 0:
        same = all(torch.equal(g, gathered[0]) for g in gathered)
        print(f"{world} ranks, banks identical on every rank: {same}")
    # Every rank finishes its collectives before any tears the group down.
    dist.barrier()
    dist.destroy_process_group()
    # A DDP module keeps gloo's worker threads alive past destroy_process_group(), and one of them may
    # free the last collective's tensors while the interpreter shuts down, aborting the finished run
    # (a PyTorch race: docs/known_issues.md). Everything is printed and nothing is left to write, so
    # end the process without that shutdown, as the lstsd harness does under torchrun.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
