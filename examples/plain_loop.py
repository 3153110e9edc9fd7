"""LSTSD in a plain PyTorch loop: a small MLP on scikit-learn's digits (runs in seconds on a CPU).

    python examples/plain_loop.py [--epochs 12] [--method lstsd|vanilla] [--checkpoint ckpt.pt [--resume]]

An exact resume needs more than the model and the method's banks: the optimizer's state, the RNG
states (dropout draws from torch's global generator) and the state of the loader's own generator,
which decides each epoch's shuffled order. ``--checkpoint`` saves all of them after every epoch;
``--resume`` continues from them, as if the run had never stopped (try ``--stop-after 2``, then
``--resume``: the last epoch prints the same numbers as an uninterrupted run).
"""

from __future__ import annotations

import argparse

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lstsd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--generation-epochs", type=int, default=3, help="E, epochs per mini-generation")
    parser.add_argument("--method", default="lstsd", choices=["lstsd", "vanilla"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", help="write everything an exact resume needs to this file after every epoch")
    parser.add_argument("--resume", action="store_true", help="continue the run saved in --checkpoint")
    parser.add_argument("--stop-after", type=int, help="stop after this many epochs (then try --resume)")
    args = parser.parse_args()
    if args.resume and not args.checkpoint:
        parser.error("--resume needs --checkpoint FILE")
    torch.manual_seed(args.seed)

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, stratify=y, random_state=args.seed)
    train_set = lstsd.IndexedDataset(TensorDataset(x_train, y_train))   # yields (x, y, index)
    # The loader's own generator: its state decides the shuffled order of every epoch still to come.
    shuffle = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(train_set, batch_size=32, shuffle=True, generator=shuffle)

    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
    if args.method == "lstsd":
        method = lstsd.LSTSD(num_samples=len(train_set), num_classes=10, generation_epochs=args.generation_epochs,
                             lambda_long=2.4, lambda_short=4.0, temperature=2.0)
    else:
        method = lstsd.create_method("vanilla", num_samples=len(train_set), num_classes=10)

    start = 0
    if args.resume:
        state = torch.load(args.checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        method.load_state_dict(state["method"])          # the banks, and the epoch the method is at
        torch.set_rng_state(state["torch_rng"])          # dropout's draws
        shuffle.set_state(state["loader_generator"])     # the order of the epochs to come
        start = state["epoch"] + 1
        print(f"resuming from epoch {start} ({args.checkpoint})")

    for epoch in range(start, args.epochs):
        model.train()
        method.start_epoch(epoch)
        for xb, yb, idx in loader:
            loss = method.loss(model(xb), yb, idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
        method.end_epoch()
        model.eval()
        with torch.no_grad():
            accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
        parts = {k: round(v.item(), 4) for k, v in method.loss_components().items()}
        print(f"epoch {epoch:2d}  test accuracy {100 * accuracy:5.2f}%  last loss {parts}")
        if args.checkpoint:
            torch.save({"epoch": epoch, "model": model.state_dict(), "optimizer": opt.state_dict(),
                        "method": method.state_dict(), "torch_rng": torch.get_rng_state(),
                        "loader_generator": shuffle.get_state()}, args.checkpoint)
        if args.stop_after is not None and epoch + 1 >= args.stop_after:
            print(f"stopped after epoch {epoch}: continue with --resume")
            return
    if args.method == "lstsd":   # each training sample now holds two soft targets of its own
        long_term, short_term = (int(bank.recorded.sum()) for bank in (method.long_term_bank, method.short_term_bank))
        print(f"soft targets recorded: long-term {long_term}, short-term {short_term} of {len(train_set)} samples")


if __name__ == "__main__":
    main()
