"""The trainer: one run of any registered method, with exact resume.

A run directory holds ``config.yaml`` (the resolved config), ``metrics.jsonl`` (one JSON row per
epoch with every loss component, learning rate, evaluation metrics and timings),
``checkpoint.pt`` (written atomically every epoch: model, optimizer, scheduler, grad scaler,
method state with its banks, RNG states, epoch) and, when finished, ``results.json``.

Example (LSTSD on 200 digits with a tiny ResNet: a few seconds on a CPU):
    >>> import tempfile
    >>> from lstsd.harness.config import load_config
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     cfg = load_config(None, ["dataset=digits", "train_subset=200", "model=resnet",
    ...                              "model_args={depth: 8, width: 4}", "method=lstsd",
    ...                              "method_args={generation_epochs: 1}", "epochs=2", "batch_size=50",
    ...                              "augment=false", "progress=none", f"run_dir={tmp}"])
    ...     results = Trainer(cfg, log=None).fit()
    ...     sorted(p.name for p in Path(tmp).iterdir())
    ['checkpoint.pt', 'config.yaml', 'metrics.jsonl', 'results.json']
    >>> results["method"], results["num_train"], sorted(results["final"])
    ('lstsd', 200, ['test_accuracy'])
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from torch import nn

from ..methods import Method, create_method
from .config import TrainConfig, config_differences
from .data import DatasetSplits, IndexedTensorLoader, TensorSplit, random_crop_flip
from .metrics import compute_metrics
from .task import Task
from .tasks import build_task

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
RESULTS = "results.json"
CONFIG = "config.yaml"
FORMAT_VERSION = 1


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available; use device=auto or cpu")
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 autocast on CPU and on CUDA GPUs that support it, fp16 AMP on other GPUs."""
    if precision != "auto":
        if precision == "fp16" and device.type != "cuda":
            raise ValueError("precision fp16 (AMP with loss scaling) needs CUDA; use bf16 or fp32 on CPU")
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if device.type == "cpu" else "fp32"


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: never a torn checkpoint."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_write_text(text: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=cfg.weight_decay)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def step_decay_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                        steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The paper's schedule, stepped per iteration: ×``lr_gamma`` at each milestone fraction.

    Milestones fall on epoch boundaries (``round(f · epochs)`` epochs).
    """
    milestones = sorted({round(f * cfg.epochs) * steps_per_epoch for f in cfg.lr_milestones} - {0})
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=cfg.lr_gamma)


class Progress:
    """A tqdm bar over the steps of an epoch when stderr is a terminal; silent otherwise."""

    def __init__(self, mode: str) -> None:
        self.enabled = mode == "bar" or (mode == "auto" and sys.stderr.isatty())

    def wrap(self, iterable: Any, total: int, description: str) -> Any:
        if not self.enabled:
            return contextlib.nullcontext(iterable)
        from tqdm.auto import tqdm
        return tqdm(iterable, total=total, desc=description, leave=False, dynamic_ncols=True)


class Trainer:
    """Train ``cfg.method`` on ``cfg.dataset`` with ``cfg.model``; evaluate every epoch.

    Args:
        cfg: the run's configuration.
        task: data and model already built (the CLI and tests may pass one); default from ``cfg``.
        log: where one-line messages go (``None``: nowhere).
    """

    def __init__(self, cfg: TrainConfig, *, task: Task | None = None,
                 log: Callable[[str], None] | None = print) -> None:
        self.cfg = cfg
        self.log = log or (lambda message: None)
        self.device = resolve_device(cfg.device)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.run_dir = cfg.run_path()

        seed_everything(cfg.seed)  # before the model is built: its initialisation is part of the run
        self.task = task or build_task(cfg)
        data: DatasetSplits = self.task.data
        self.model = self.task.model.to(self.device)
        self.image_data = isinstance(data.train.features, torch.Tensor) and data.train.features.dim() == 4
        if cfg.channels_last and self.image_data:
            self.model = self.model.to(memory_format=torch.channels_last)
        memory_format = torch.channels_last if cfg.channels_last and self.image_data else torch.contiguous_format
        transform = None
        if cfg.augment and self.image_data:
            padding = cfg.augment_padding
            transform = lambda x, g: random_crop_flip(x, padding=padding, generator=g)  # noqa: E731
        self.train_loader = IndexedTensorLoader(data.train, cfg.batch_size, shuffle=True, drop_last=cfg.drop_last,
                                                seed=cfg.seed, device=self.device, transform=transform,
                                                memory_format=memory_format)
        if len(self.train_loader) == 0:
            raise ValueError(f"batch_size={cfg.batch_size} with drop_last leaves no batch of "
                             f"{len(data.train)} training samples")
        self.eval_splits = {name: split for name, split in (("val", data.val), ("test", data.test)) if split is not None}
        self.eval_memory_format = memory_format

        self.method: Method = create_method(cfg.method, num_samples=len(data.train), num_classes=data.num_classes,
                                            **cfg.method_args)
        # The loader produces a permutation of [0, N): per-step index checks would only add syncs.
        self.method.validate = False
        self.steps_per_epoch = len(self.train_loader)
        self.method.setup(self.model, epochs=cfg.epochs, steps_per_epoch=self.steps_per_epoch)
        self.optimizer = build_optimizer(cfg, self.model)
        self.scheduler = (self.method.configure_lr_scheduler(self.optimizer, epochs=cfg.epochs,
                                                             steps_per_epoch=self.steps_per_epoch)
                          or step_decay_schedule(self.optimizer, cfg, self.steps_per_epoch))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.start_epoch = 0
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self, epoch: int) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "epoch": epoch, "config": self.cfg.to_dict(),
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "method": self.method.state_dict(), "rng": rng_state(), "history": self.history}

    def save_checkpoint(self, epoch: int) -> Path:
        path = self.run_dir / CHECKPOINT
        atomic_save(self.checkpoint_state(epoch), path)
        return path

    def load_checkpoint(self, path: str | os.PathLike) -> int:
        """Restore everything from ``path``; return the next epoch to run."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}; start without --resume, or point at a run directory "
                                    f"that contains {CHECKPOINT}")
        state = torch.load(path, map_location=self.device, weights_only=False)
        if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
            raise ValueError(f"{path} is not an lstsd checkpoint (format {FORMAT_VERSION})")
        saved, now = state["config"], self.cfg.to_dict()
        diff = config_differences(saved, now)
        if diff:
            listing = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, now {now.get(k)!r}" for k in diff)
            raise ValueError(f"{path} comes from another run ({listing}). Resume with the run's own config "
                             f"({self.run_dir / CONFIG}) or start a new run directory")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.method.load_state_dict(state["method"])
        set_rng_state(state["rng"])
        self.history = list(state["history"])
        return int(state["epoch"]) + 1

    # ------------------------------------------------------------------ loop
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to ``cfg.epochs`` (continuing from the run's checkpoint if ``resume``); return the results."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if resume:
            self.start_epoch = self.load_checkpoint(self.run_dir / CHECKPOINT)
            self.log(f"resuming {self.run_dir} at epoch {self.start_epoch}")
        elif (self.run_dir / CHECKPOINT).exists():
            raise FileExistsError(f"{self.run_dir} already holds a run; pass --resume to continue it, or choose "
                                  "another run directory (run_dir / out_dir / name)")
        import yaml
        atomic_write_text(yaml.safe_dump(self.cfg.to_dict(), sort_keys=False), self.run_dir / CONFIG)
        self._write_metrics()
        progress = Progress(self.cfg.progress)
        for epoch in range(self.start_epoch, self.cfg.epochs):
            row = self.train_epoch(epoch, progress)
            if (epoch + 1) % self.cfg.eval_every == 0 or epoch + 1 == self.cfg.epochs:
                row.update(self.evaluate())
            self.history.append(row)
            self._write_metrics()
            self.save_checkpoint(epoch)
            self.log(self._epoch_line(row))
        results = self.results()
        atomic_write_text(json.dumps(results, indent=2), self.run_dir / RESULTS)
        return results

    def train_epoch(self, epoch: int, progress: Progress) -> dict[str, Any]:
        cfg, model, method = self.cfg, self.model, self.method
        model.train()
        method.start_epoch(epoch)
        self.train_loader.set_epoch(epoch)
        lr = self.optimizer.param_groups[0]["lr"]
        sums: dict[str, torch.Tensor] = {}
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        seen = 0
        start = time.perf_counter()
        with progress.wrap(self.train_loader, len(self.train_loader), f"epoch {epoch + 1}/{cfg.epochs}") as batches:
            for step, (x, y, idx) in enumerate(batches):
                with autocast(self.device, self.precision):
                    logits = model(x)
                    loss = method.loss(logits, y, idx, model=model, inputs=x)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                method.end_step(model)
                self.scheduler.step()
                n = y.shape[0]
                for name, value in method.loss_components().items():   # stays on device: no sync
                    sums[name] = sums.get(name, 0) + value * n
                correct += (logits.detach().argmax(1) == y).sum()
                seen += n
                if progress.enabled and step % 10 == 0:
                    batches.set_postfix(loss=f"{float(loss):.3f}", acc=f"{100 * float(correct) / seen:.1f}")
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        train_seconds = time.perf_counter() - start
        method.end_epoch(model)
        row: dict[str, Any] = {"epoch": epoch, "lr": lr, "train_seconds": train_seconds,
                               "train_accuracy": 100 * float(correct) / seen}
        row.update({f"loss_{k}": float(v) / seen for k, v in sums.items()})
        if not all(math.isfinite(v) for k, v in row.items() if k.startswith("loss_")):
            raise FloatingPointError(f"epoch {epoch}: the training loss is not finite ({row}); lower the learning "
                                     "rate or use precision=fp32")
        return row

    @torch.no_grad()
    def predict(self, split: TensorSplit) -> dict[str, torch.Tensor]:
        """Class probabilities of every predictor the method reports, on ``split``."""
        self.model.eval()
        loader = IndexedTensorLoader(split, self.cfg.eval_batch_size, shuffle=False, device=self.device,
                                     memory_format=self.eval_memory_format)
        outputs: dict[str, list[torch.Tensor]] = {}
        for x, _, _ in loader:
            with autocast(self.device, self.precision):
                for name, probs in self.method.eval_predictions(self.model, x).items():
                    outputs.setdefault(name, []).append(probs.float())
        return {name: torch.cat(parts) for name, parts in outputs.items()}

    def evaluate(self) -> dict[str, float]:
        start = time.perf_counter()
        row: dict[str, float] = {}
        for split_name, split in self.eval_splits.items():
            labels = split.labels.to(self.device)
            for predictor, probs in self.predict(split).items():
                suffix = "" if predictor == "model" else f"_{predictor}"
                for metric, value in compute_metrics(self.task.metrics, probs.argmax(1), labels).items():
                    row[f"{split_name}_{metric}{suffix}"] = value
        row["eval_seconds"] = time.perf_counter() - start
        return row

    def model_label(self) -> str:
        """The model's name with its settings, e.g. ``resnet(depth=8,width=16)``: the report's column."""
        args = ",".join(f"{k}={v}" for k, v in sorted(self.cfg.model_args.items()))
        return f"{self.cfg.model}({args})" if args else self.cfg.model

    def _epoch_line(self, row: dict[str, Any]) -> str:
        metric = self.task.metrics[0]
        shown = [f"epoch {row['epoch'] + 1}/{self.cfg.epochs}", f"loss {row.get('loss_total', float('nan')):.4f}",
                 f"train acc {row['train_accuracy']:.2f}"]
        shown += [f"{k} {v:.2f}" for k, v in row.items() if k.startswith(("val_", "test_")) and metric in k]
        return f"[{self.cfg.name}] " + "  ".join(shown) + f"  ({row['train_seconds']:.1f}s)"

    def _write_metrics(self) -> None:
        text = "".join(json.dumps(row) + "\n" for row in self.history)
        atomic_write_text(text, self.run_dir / METRICS)

    def results(self) -> dict[str, Any]:
        """Final metrics (last epoch — never the best on test), cost figures and identification."""
        last = self.history[-1]
        train_seconds = sum(r["train_seconds"] for r in self.history)
        steps = self.steps_per_epoch * len(self.history)
        return {
            "name": self.cfg.name, "method": self.cfg.method, "model": self.model_label(),
            "dataset": self.cfg.dataset,
            "seed": self.cfg.seed, "epochs": self.cfg.epochs, "num_train": len(self.task.data.train),
            "metrics": list(self.task.metrics),
            "final": {k: v for k, v in last.items() if k.startswith(("val_", "test_"))},
            "cost": {"train_seconds": train_seconds, "seconds_per_step": train_seconds / max(steps, 1),
                     "extra_forward_passes": type(self.method).extra_forward_passes,
                     "parameters": sum(p.numel() for p in self.model.parameters()),
                     "device": str(self.device), "precision": self.precision},
        }


def iterate_runs(run_dirs: list[str | os.PathLike]) -> Iterator[tuple[Path, dict[str, Any], list[dict[str, Any]]]]:
    """``(run_dir, results, metrics rows)`` of finished runs; a clear error for unfinished ones."""
    for run_dir in map(Path, run_dirs):
        results_path = run_dir / RESULTS
        if not results_path.is_file():
            raise FileNotFoundError(f"{run_dir} has no {RESULTS}: it is not a finished run (resume it with "
                                    f"lstsd train --config {run_dir / CONFIG} --resume)")
        results = json.loads(results_path.read_text())
        rows = [json.loads(line) for line in (run_dir / METRICS).read_text().splitlines() if line.strip()]
        yield run_dir, results, rows
