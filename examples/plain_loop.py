"""LSTSD in a plain PyTorch loop: a small MLP on scikit-learn's digits (runs in seconds on a CPU).

    python examples/plain_loop.py [--epochs 12] [--method lstsd|vanilla]
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
    args = parser.parse_args()
    torch.manual_seed(args.seed)

    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, stratify=y, random_state=args.seed)
    train_set = lstsd.IndexedDataset(TensorDataset(x_train, y_train))   # yields (x, y, index)
    loader = DataLoader(train_set, batch_size=32, shuffle=True)

    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
    if args.method == "lstsd":
        method = lstsd.LSTSD(num_samples=len(train_set), num_classes=10, generation_epochs=args.generation_epochs,
                             lambda_long=2.4, lambda_short=4.0, temperature=2.0)
    else:
        method = lstsd.create_method("vanilla", num_samples=len(train_set), num_classes=10)

    for epoch in range(args.epochs):
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


if __name__ == "__main__":
    main()
