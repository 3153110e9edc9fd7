"""LSTSD from PyTorch Lightning: a small CNN on a Fashion-MNIST subset, vanilla vs LSTSD.

    python examples/lightning_fashion_mnist.py [--epochs 16] [--train-subset 1000] [--methods vanilla,lstsd]

Offline: Fashion-MNIST comes from Debian's dataset-fashion-mnist package (make demo's set-up);
about two minutes on 2 CPU cores for both runs. Needs ``pip install -e '.[lightning]'`` in a clone.

The whole integration is three lines in the LightningModule and one callback:
``training_loss(self, logits, y, idx)`` in ``training_step``, ``configure_optimizers(self, opt)``
(only the snapshot methods need it, for their cyclic LR), and ``LSTSDCallback(...)`` in the
Trainer, which also puts the method's banks into Lightning's checkpoints. Any registered method
name works (``--methods vanilla,lstsd,mean_teacher,snapshot_distillation``).

It shows the integration, not the paper's claim: at this scale (1,000 images, 16 epochs, four
mini-generations) LSTSD and vanilla end within noise of each other (README, docs/results.md).
"""

from __future__ import annotations

import argparse
import time
import warnings

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import lstsd
from lstsd.harness.data import load_dataset
from lstsd.integrations.lightning import LSTSDCallback, configure_optimizers, training_loss

warnings.filterwarnings("ignore", ".*does not have many workers.*")


class CNN(L.LightningModule):
    def __init__(self, lr: float, epochs: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(32 * 7 * 7, 10))
        self.lr, self.epochs = lr, epochs

    def training_step(self, batch, batch_idx):
        x, y, idx = batch                                         # lstsd.IndexedDataset adds idx
        return training_loss(self, self.net(x), y, idx, inputs=x)   # inputs: for teacher-forward methods

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self.net(x)
        self.log_dict({"val_loss": F.cross_entropy(logits, y),
                       "val_acc": (logits.argmax(1) == y).float().mean()}, prog_bar=False)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.epochs)
        return configure_optimizers(self, opt, cosine)      # the snapshot methods use their own (with a warning)


class PrintEpochs(L.Callback):
    def __init__(self, val_size: int) -> None:
        self.val_size = val_size

    def on_train_epoch_end(self, trainer, pl_module):      # after this epoch's validation
        m = trainer.callback_metrics
        parts = "  ".join(f"{k.removeprefix('lstsd/')} {v.item():.3f}" for k, v in m.items() if k.startswith("lstsd/"))
        print(f"  epoch {trainer.current_epoch + 1:2d}  accuracy on {self.val_size} test images "
              f"{100 * m['val_acc'].item():5.2f}%  "
              f"train loss: {parts}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=16)
    parser.add_argument("--generation-epochs", type=int, default=4, help="E, epochs per mini-generation")
    parser.add_argument("--train-subset", type=int, default=1000)
    parser.add_argument("--val-size", type=int, default=2000, help="test images evaluated after each epoch")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--methods", default="vanilla,lstsd", help="comma-separated registered method names")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = load_dataset("fashion_mnist", train_subset=args.train_subset, seed=args.seed)
    train_set = lstsd.IndexedDataset(TensorDataset(data.train.features, data.train.labels))
    test_set = TensorDataset(data.test.features, data.test.labels)
    part = torch.randperm(len(test_set), generator=torch.Generator().manual_seed(args.seed))[:args.val_size]
    val_loader = DataLoader(torch.utils.data.Subset(test_set, part.tolist()), batch_size=1000)  # each epoch
    test_loader = DataLoader(test_set, batch_size=1000)                                       # at the end
    settings = {"lstsd": {"generation_epochs": args.generation_epochs, "lambda_long": 2.4, "lambda_short": 4.0,
                          "temperature": 2.0},
                "lstsd_single": {"generation_epochs": args.generation_epochs},
                "snapshot_distillation": {"cycle_epochs": args.generation_epochs},
                "snapshot_ensembles": {"cycle_epochs": args.generation_epochs}}
    print(f"Fashion-MNIST: {len(train_set)} training images, {len(data.test)} test images, {args.epochs} epochs")

    results = {}
    for name in args.methods.split(","):
        print(f"{name}:", flush=True)
        L.seed_everything(args.seed, verbose=False)
        callback = LSTSDCallback(name, num_samples=len(train_set), num_classes=data.num_classes, network="net",
                                 **settings.get(name, {}))
        trainer = L.Trainer(max_epochs=args.epochs, accelerator="auto", devices=1,
                            callbacks=[callback, PrintEpochs(len(part))], logger=False, enable_checkpointing=False,
                            enable_progress_bar=False, enable_model_summary=False)
        loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
        start = time.perf_counter()
        model = CNN(args.lr, args.epochs)
        trainer.fit(model, loader, val_loader)
        accuracy = trainer.validate(model, test_loader, verbose=False)[0]["val_acc"]   # the whole test set
        if name == "lstsd":   # each training image now holds two soft targets of its own
            banks = (callback.method.long_term_bank, callback.method.short_term_bank)
            long_term, short_term = (int(bank.recorded.sum()) for bank in banks)
            print(f"  soft targets recorded: long-term {long_term}, short-term {short_term} of {len(train_set)} images")
        results[name] = (accuracy, time.perf_counter() - start)

    print(f"\nmethod                  accuracy on the {len(test_set)} test images   time")
    for name, (acc, seconds) in results.items():
        print(f"{name:22s}  {100 * acc:34.2f}%  {seconds:5.1f}s")


if __name__ == "__main__":
    main()
