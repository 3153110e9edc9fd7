"""The trainer: one run of any registered method, with exact resume, in one process or under torchrun.

A run directory (:mod:`lstsd.harness.rundir`) holds ``config.yaml`` (the resolved config),
``metrics.jsonl`` (one JSON row per epoch with every loss component ``loss_<part>`` and its weight
``weight_<part>`` in the total, learning rate, evaluation metrics and timings; its ``epoch`` key
is 0-based, messages and plots say "epoch 1/E"), ``checkpoint.pt`` (written atomically every epoch
with a digest of its content, the one it replaces kept as ``checkpoint.prev.pt``: model, optimizer,
scheduler, grad scaler, method state with its banks, every process's RNG states, epoch; see
:mod:`lstsd.harness.checkpoint`) and, when finished, ``results.json``.

Under ``torchrun --nproc_per_node=N`` (:mod:`lstsd.harness.ddp`) the model is wrapped in PyTorch's
``DistributedDataParallel``; each step's global batch of ``batch_size`` samples (the single-process
order) is split evenly over the processes; the method keeps its banks identical on every process
(:mod:`lstsd.distributed`); evaluation shares the test set out and gathers the predictions; rank 0
writes logs, metrics and checkpoints, and every process resumes from them.

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
    ['checkpoint.prev.pt', 'checkpoint.pt', 'config.yaml', 'metrics.jsonl', 'results.json']
    >>> results["method"], results["num_train"], sorted(results["final"])
    ('lstsd', 200, ['test_accuracy'])
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..methods import Method, create_method
from .checkpoint import atomic_write_text, load_latest, previous_path, remove_stale_temporaries, save_checkpoint
from .config import TrainConfig, config_differences
from .data import IndexedTensorLoader, TensorSplit, random_crop_flip
from .ddp import init_processes, lost_peer, peer_failure
from .errors import DiskFullError, DivergedError, RunError, is_disk_full
from .metrics import compute_metrics, lower_is_better
from .optim import build_optimizer, step_decay_schedule
from .rundir import CHECKPOINT, CONFIG, METRICS, RESULTS, resume_command
from .runtime import (
    Progress,
    autocast,
    resolve_device,
    resolve_precision,
    rng_state,
    same_precision,
    seed_everything,
    set_rng_state,
)
from .task import Task
from .tasks import build_task
from .text.generation import create_sequence_method
from .text.sequences import SequenceLoader, SequenceSplits, token_hits

# Progress and autocast lived here: tests and benchmarks still import them from this module.
__all__ = ["Progress", "Trainer", "autocast", "teacher_summary"]

# A sparse per-token teacher whose stored tokens hold less of its probability than this (%) is
# mostly a pull toward the uniform distribution: the run says so (Trainer._warn_on_stored_mass).
LOW_STORED_MASS = 80.0


class Trainer:
    """Train ``cfg.method`` on ``cfg.dataset`` with ``cfg.model``; evaluate every epoch.

    Args:
        cfg: the run's configuration.
        task: data and model already built (the CLI and tests may pass one); default from ``cfg``.
        log: where one-line messages go (``None``: nowhere).
        warn: where warnings go (a stored checkpoint unreadable, teachers that are mostly a uniform
            pull): by default ``log``, prefixed ``warning:``, or stderr when ``log`` is ``None`` (the
            runs of ``--jobs N``), so that no warning is lost.
    """

    def __init__(self, cfg: TrainConfig, *, task: Task | None = None,
                 log: Callable[[str], None] | None = print, warn: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.procs, device_name = init_processes(cfg.device)
        self.device = resolve_device(device_name)
        self.reports_epochs = log is not None and self.procs.main
        self.log = log if log is not None and self.procs.main else (lambda message: None)
        if warn is None:
            warn = ((lambda message: log(f"warning: {message}")) if log is not None else
                    (lambda message: print(f"lstsd: warning: {message}", file=sys.stderr, flush=True)))
        self.warn = warn if self.procs.main else (lambda message: None)
        self.precision = resolve_precision(cfg.precision, self.device)
        self.run_dir = cfg.run_path()

        seed_everything(cfg.seed)  # before the model is built: its initialisation is part of the run
        self.task = task or build_task(cfg)
        data = self.task.data
        self.model = self.task.model.to(self.device)
        self.sequences = isinstance(data, SequenceSplits)   # the text-generation task: a causal LM's tokens
        features = getattr(data.train, "features", None)
        self.image_data = isinstance(features, torch.Tensor) and features.dim() == 4
        if cfg.channels_last and self.image_data:
            # Module.to takes memory_format at run time; its type stubs do not declare it.
            self.model = self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        memory_format = torch.channels_last if cfg.channels_last and self.image_data else torch.contiguous_format
        transform = None
        if cfg.augment and self.image_data:
            padding = cfg.augment_padding
            transform = lambda x, g: random_crop_flip(x, padding=padding, generator=g)  # noqa: E731
        self.train_loader: IndexedTensorLoader | SequenceLoader
        if isinstance(data, SequenceSplits):
            self.train_loader = SequenceLoader(data.train, cfg.batch_size, pad_id=data.pad_id, shuffle=True,
                                               drop_last=cfg.drop_last, seed=cfg.seed, device=self.device,
                                               rank=self.procs.rank, world_size=self.procs.world_size)
        else:
            self.train_loader = IndexedTensorLoader(data.train, cfg.batch_size, shuffle=True,
                                                    drop_last=cfg.drop_last, seed=cfg.seed, device=self.device,
                                                    transform=transform, memory_format=memory_format,
                                                    rank=self.procs.rank, world_size=self.procs.world_size)
        if len(self.train_loader) == 0:
            raise ValueError(f"batch_size={cfg.batch_size} with drop_last leaves no batch of "
                             f"{len(data.train)} training samples")
        self.eval_splits = {name: split for name, split in (("val", data.val), ("test", data.test))
                            if isinstance(split, TensorSplit)}
        self.eval_memory_format = memory_format

        # The network trained by the optimizer: under torchrun, DDP around the model (its gradients
        # are averaged over the processes); the method's hooks always get the model itself.
        self.network: nn.Module = self.model
        if self.procs.distributed:
            if cfg.sync_batchnorm:
                self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self.network = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

        # A causal LM's logits are B × T × V: the method takes them per token (per_token=True where it can).
        build = create_sequence_method if self.sequences else create_method
        self.method: Method = build(cfg.method, num_samples=len(data.train), num_classes=data.num_classes,
                                    **cfg.method_args).to(self.device)
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
        self.before_training: dict[str, float] | None = None   # the task's own evaluation before any step
        self.initial_pass_seconds: float | None = None          # the method's pass before training, if it needs one
        self._warned_stored_mass = False
        self._saved_epoch: int | None = None    # the last epoch whose checkpoint is known written

    # ------------------------------------------------------------------ checkpoints
    def checkpoint_state(self, epoch: int) -> dict[str, Any]:
        """Everything needed to continue exactly (every process's RNG states: call on all of them)."""
        return {"epoch": epoch, "world_size": self.procs.world_size, "config": self.cfg.to_dict(),
                "precision": self.precision,    # as resolved (auto: bf16 or fp32...): what a resume compares
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "method": self.method.state_dict(), "rng": self.procs.gather_objects(rng_state()),
                "history": self.history, "before_training": self.before_training,
                "initial_pass_seconds": self.initial_pass_seconds}

    def save_checkpoint(self, epoch: int) -> Path:
        """Write the end-of-``epoch`` checkpoint (rank 0; every process must call it).

        Raises:
            RunError: the disk is full or the write failed; the previous checkpoint is intact.
        """
        path = self.run_dir / CHECKPOINT
        state = self.checkpoint_state(epoch)
        if self.procs.main:
            try:
                save_checkpoint(state, path)
            except (OSError, RuntimeError) as err:
                kept = (f"the checkpoint of epoch {epoch} in {path} is intact" if path.exists()
                        else "no checkpoint was written yet")
                full = is_disk_full(err)
                what = "the disk is full" if full else f"writing {path} failed ({err})"
                error = DiskFullError if full else RunError
                raise error(f"{what} while saving the checkpoint of epoch {epoch + 1}; {kept}",
                            f"free space (or fix the folder), then resume with: {self.resume_command()}") from err
            self._saved_epoch = epoch          # written: whatever happens to the other processes now
        self.procs.barrier()
        self._saved_epoch = epoch
        return path

    def resume_command(self) -> str:
        """The command that continues this run from its checkpoint (:func:`~lstsd.harness.rundir.resume_command`)."""
        return resume_command(self.run_dir, self.procs.world_size)

    def load_checkpoint(self, path: str | os.PathLike) -> int:
        """Restore everything from ``path`` (or, if it is unreadable, its ``.prev``); return the next epoch.

        Raises:
            FileNotFoundError: no checkpoint; CorruptCheckpointError: neither file is readable;
            ValueError: the checkpoint comes from another run or another number of processes.
        """
        path = Path(path)
        try:
            state, used, problem = load_latest(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"no checkpoint at {path}; start without --resume, or point at a run "
                                    f"directory that contains {CHECKPOINT}") from None
        if problem:
            self.warn(f"{problem}; resuming from {used.name} (epoch {int(state['epoch']) + 1}) instead")
        saved, now = state["config"], self.cfg.to_dict()
        diff = config_differences(saved, now)
        # precision=auto resolved to what is asked now (fp32 on this CPU, say) is the same precision.
        saved_precision = state.get("precision") or saved.get("precision", "auto")
        if "precision" in diff and same_precision(saved_precision, self.precision, self.device):
            diff.remove("precision")
            self.cfg.precision = saved["precision"]   # the run keeps its own settings (config.yaml, the report)
        if diff:
            listing = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, now {now.get(k)!r}" for k in diff)
            raise ValueError(f"{used} comes from another run ({listing}). Resume with the run's own config "
                             f"({self.run_dir / CONFIG}) or start a new run directory")
        if state["world_size"] != self.procs.world_size:
            raise ValueError(f"{used} was written by {state['world_size']} process(es), this run has "
                             f"{self.procs.world_size}: resume with the same number (torchrun "
                             f"--nproc_per_node={state['world_size']}, or plain lstsd for 1)")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.method.load_state_dict(state["method"])
        set_rng_state(state["rng"][self.procs.rank])
        self.history = list(state["history"])
        self.before_training = state.get("before_training")
        self.initial_pass_seconds = state.get("initial_pass_seconds")
        return int(state["epoch"]) + 1

    # ------------------------------------------------------------------ loop
    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to ``cfg.epochs`` (continuing from the run's checkpoint if ``resume``); return the results."""
        checkpoint = self.run_dir / CHECKPOINT
        if self.procs.main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(self.run_dir)
        if resume:
            self.start_epoch = self.load_checkpoint(checkpoint)
            self._saved_epoch = self.start_epoch - 1
            if self.start_epoch >= self.cfg.epochs:
                return self._finished_already()
            self.log(f"resuming {self.run_dir} at epoch {self.start_epoch + 1}/{self.cfg.epochs}")
        elif checkpoint.exists() or previous_path(checkpoint).exists():
            raise FileExistsError(f"{self.run_dir} already holds a run; pass --resume to continue it, or choose "
                                  "another run directory (run_dir / out_dir / name)")
        self.procs.barrier()   # every process has checked the run directory before rank 0 writes to it
        if self.procs.main:
            import yaml
            atomic_write_text(yaml.safe_dump(self.cfg.to_dict(), sort_keys=False), self.run_dir / CONFIG)
            self._write_metrics()
        if not resume and self.task.evaluate is not None:   # e.g. the LM's held-out and probe loss, pretrained
            self.before_training = self._task_evaluation()
            self.log(f"[{self.cfg.name}] before training: "
                     + "  ".join(f"{k} {v:.4f}" for k, v in self.before_training.items()))
        if not resume and self.method.needs_initial_pass:
            self.initial_pass()
        progress = Progress(self.cfg.progress, epochs_reported=self.reports_epochs)
        epoch = self.start_epoch
        try:
            for epoch in range(self.start_epoch, self.cfg.epochs):
                row = self.train_epoch(epoch, progress)
                if (epoch + 1) % self.cfg.eval_every == 0 or epoch + 1 == self.cfg.epochs:
                    row.update(self.evaluate())
                self.history.append(row)
                self.save_checkpoint(epoch)
                if self.procs.main:
                    self._write_metrics()
                self.log(self._epoch_line(row))
                if self.procs.main:
                    progress.epoch_done(self._epoch_line(row))
            results = self.results()
            if self.procs.main:
                atomic_write_text(json.dumps(results, indent=2), self.run_dir / RESULTS)
            self.procs.barrier()
        except RuntimeError as err:
            if self.procs.distributed and lost_peer(err):
                raise self._lost_peer_error(err, epoch) from err
            raise
        return results

    def _finished_already(self) -> dict[str, Any]:
        """``--resume`` of a run that trained all its epochs: nothing to train. Its results, written
        again from the final checkpoint if a crash lost them (or its metrics' last row)."""
        path = self.run_dir / RESULTS
        results: Any = None
        if path.is_file():
            try:
                results = json.loads(path.read_text())
            except (OSError, ValueError):
                results = None
        if not isinstance(results, dict) or "final" not in results:
            results = self.results()
            if self.procs.main:
                self._write_metrics()
                atomic_write_text(json.dumps(results, indent=2), path)
        self.log(f"{self.run_dir} has finished all {self.cfg.epochs} epochs already: nothing to resume "
                 f"(its results: {path})")
        self.procs.barrier()
        return results

    def _lost_peer_error(self, err: BaseException, epoch: int) -> RunError:
        """What to say when another process of the run is gone: which, where the run stands, how to resume."""
        others = [r for r in range(self.procs.world_size) if r != self.procs.rank]
        peer = f"rank {others[0]}" if len(others) == 1 else "another process"
        what = (f"process rank {self.procs.rank} of {self.procs.world_size} lost {peer} of the run during epoch "
                f"{epoch + 1}/{self.cfg.epochs} ({peer} stopped: killed, crashed or out of memory; "
                f"{peer_failure(err)})")
        if self._saved_epoch is None or self._saved_epoch < 0:
            return RunError(f"{what}; no checkpoint was written yet",
                            f"start the run again: {self.resume_command().removesuffix(' --resume')}")
        later = "" if self.procs.main else " or a later one"
        return RunError(f"{what}; the checkpoint of epoch {self._saved_epoch + 1}{later} in {self.run_dir} is intact",
                        f"continue with: {self.resume_command()}")

    @torch.no_grad()
    def initial_pass(self) -> None:
        """The pass over the training set a method makes before training (``needs_initial_pass``,
        e.g. LSTSD's ``long_term_teacher="pretrained"``): the network in eval mode, epoch 0's batches."""
        self.model.eval()
        self.train_loader.set_epoch(0)
        start = time.perf_counter()
        for x, y, idx in self.train_loader:
            with autocast(self.device, self.precision):
                logits = self.network(x)
            self.method.record_initial(logits, y, idx)
        self.initial_pass_seconds = time.perf_counter() - start
        self.log(f"[{self.cfg.name}] {self.method.name}: recorded the network's predictions before training "
                 f"({self.initial_pass_seconds:.0f}s)")

    def train_epoch(self, epoch: int, progress: Progress) -> dict[str, Any]:
        cfg, model, method = self.cfg, self.model, self.method
        model.train()
        method.start_epoch(epoch)
        self.train_loader.set_epoch(epoch)
        lr = self.optimizer.param_groups[0]["lr"]
        sums: dict[str, torch.Tensor] = {}
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        counted = torch.zeros((), device=self.device, dtype=torch.long)   # what train_accuracy counts
        seen = 0
        start = time.perf_counter()
        first_bad_step = torch.full((), -1, device=self.device, dtype=torch.long)
        with progress.wrap(self.train_loader, len(self.train_loader), f"epoch {epoch + 1}/{cfg.epochs}") as batches:
            for step, (x, y, idx) in enumerate(batches):
                with autocast(self.device, self.precision):
                    logits = self.network(x)
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
                if self.sequences:   # answer tokens, after the causal shift
                    hits, tokens = token_hits(logits, y)
                    correct += hits
                    counted += tokens
                else:
                    correct += (logits.detach().argmax(1) == y).sum()
                    counted += n
                seen += n
                # The first step whose loss is not finite, recorded on the device (no sync per step).
                bad = ~torch.isfinite(loss.detach()) & (first_bad_step < 0)
                first_bad_step = torch.where(bad, torch.full_like(first_bad_step, step), first_bad_step)
                if progress.enabled and step % 10 == 0:
                    batches.set_postfix(loss=f"{loss.detach().item():.3f}",
                                        acc=f"{100 * correct.item() / max(counted.item(), 1):.1f}")
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        train_seconds = time.perf_counter() - start
        if self.procs.distributed:   # every process's batch-norm statistics and snapshots equal rank 0's
            for buffer in model.buffers():
                torch.distributed.broadcast(buffer, 0)
        teachers = method.teacher_diagnostics(self.procs.sum if self.procs.distributed else None)
        self._warn_on_stored_mass(teachers)
        # Each loss part's weight at the epoch's last step (constant within an epoch; the same on every
        # process), read before end_epoch moves the method on: the report weights the parts with it.
        weights = {name: float(value) for name, value in method.loss_weights().items()}
        method.end_epoch(model)
        names = sorted(sums)
        totals = self.procs.sum(torch.stack([correct.double(), torch.tensor(float(seen), device=self.device),
                                             first_bad_step.double().clamp_min(-1) + 1, counted.double()]
                                            + [sums[k].double() for k in names]))
        bad_processes_step = int(totals[2].item())   # 0 when every process's losses were finite
        if bad_processes_step or not torch.isfinite(totals[4:]).all():
            step_text = (f", step {int(first_bad_step.item()) + 1}/{self.steps_per_epoch}"
                         if int(first_bad_step.item()) >= 0 else "")
            kept = f"the checkpoint of epoch {epoch} is kept in {self.run_dir}" if epoch else "no checkpoint was kept"
            raise DivergedError(f"the training loss became NaN or infinite at epoch {epoch + 1}/{cfg.epochs}"
                                f"{step_text} (nothing non-finite was written to the banks; {kept}) — lower the "
                                "learning rate, use precision=fp32, or check the data, and start a new run")
        total_seen = float(totals[1].item())
        row: dict[str, Any] = {"epoch": epoch, "lr": lr, "train_seconds": train_seconds,
                               "train_accuracy": 100 * float(totals[0].item()) / max(float(totals[3].item()), 1.0)}
        row.update({f"loss_{k}": float(v) / total_seen for k, v in zip(names, totals[4:].tolist())})
        row.update({f"weight_{k}": v for k, v in weights.items()})   # total = Σ weight_k × loss_k
        row.update({f"teacher_{k}": v for k, v in teachers.items()})   # lstsd.diagnostics, per teacher
        return row

    def _warn_on_stored_mass(self, teachers: dict[str, float]) -> None:
        """Once a run: say so when a sparse teacher's stored tokens hold less than
        :data:`LOW_STORED_MASS` % of its probability (top-k per token: the rest, spread uniformly over
        the vocabulary, pulls the student toward uniform; ``docs/results.md``, language models)."""
        low = [(k.removesuffix("_stored_mass"), v) for k, v in teachers.items()
               if k.endswith("_stored_mass") and v < LOW_STORED_MASS]
        if low and not self._warned_stored_mass:
            self._warned_stored_mass = True
            name, mass = low[0]
            fix = ("method_args.bank_format=sampled stores an unbiased estimate of the teacher instead"
                   if hasattr(self.method, "bank_settings") else "a larger method_args.bank_topk keeps more of it")
            self.warn(f"[{self.cfg.name}] the {name} teacher's stored tokens hold {mass:.0f}% of its "
                     "probability; the rest, spread uniformly over the vocabulary, pulls the student toward uniform "
                     f"({fix})")

    @torch.no_grad()
    def predict(self, split: TensorSplit) -> dict[str, torch.Tensor]:
        """Class probabilities of every predictor the method reports, on ``split`` (under torchrun,
        each process predicts its share and the shares are gathered: every sample once)."""
        self.model.eval()
        share = self.procs.share(len(split))
        local = split.subset(torch.arange(len(split))[share]) if self.procs.distributed else split
        outputs: dict[str, list[torch.Tensor]] = {}
        if len(local):
            loader = IndexedTensorLoader(local, self.cfg.eval_batch_size, shuffle=False, device=self.device,
                                         memory_format=self.eval_memory_format)
            for x, _, _ in loader:
                with autocast(self.device, self.precision):
                    for name, probs in self.method.eval_predictions(self.model, x).items():
                        outputs.setdefault(name, []).append(probs.float())
        names = self.procs.gather_objects(sorted(outputs))[0]   # rank 0 has a share whenever any has
        empty = torch.zeros(0, self.task.data.num_classes, device=self.device)
        return {name: self.procs.gather_rows(torch.cat(outputs[name]) if name in outputs else empty, len(split))
                for name in names}

    def _task_evaluation(self) -> dict[str, float]:
        """The task's own evaluation (:attr:`Task.evaluate`: the LM's held-out and probe losses); every
        process computes it whole (the same numbers: the model is the same on each)."""
        assert self.task.evaluate is not None
        return self.task.evaluate(self.model, self.device, self.precision, self.cfg.eval_batch_size)

    def evaluate(self) -> dict[str, float]:
        """Metrics of every evaluated split (``test_<metric>``, ``val_<metric>``) and ``eval_seconds``."""
        start = time.perf_counter()
        row: dict[str, float] = {}
        if self.task.evaluate is not None:
            row.update(self._task_evaluation())
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
        digits = 4 if lower_is_better(metric) else 2
        shown += [f"{k} {v:.{digits}f}" for k, v in row.items()
                  if k.startswith(("val_", "test_", "probe_")) and metric in k]
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
            "final": {k: v for k, v in last.items() if k.startswith(("val_", "test_", "probe_"))},
            "cost": {"train_seconds": train_seconds, "seconds_per_step": train_seconds / max(steps, 1),
                     "extra_forward_passes": self.method.extra_forward_passes,
                     "parameters": sum(p.numel() for p in self.model.parameters()),
                     "device": str(self.device), "precision": self.precision,
                     "processes": self.procs.world_size, "threads": torch.get_num_threads()}
            | ({"initial_pass_seconds": self.initial_pass_seconds} if self.initial_pass_seconds is not None else {}),
            "data_source": getattr(self.task.data, "source", None),
            "teachers": teacher_summary(self.history),
        } | ({"before_training": self.before_training} if self.before_training is not None else {})


def teacher_summary(history: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Each ``teacher_*`` diagnostic of a run: its value in the last epoch that has it, and its mean
    over the epochs that have it (a teacher exists only from the second mini-generation on).

    Example:
        >>> teacher_summary([{"epoch": 0}, {"epoch": 1, "teacher_short_kl": 0.2},
        ...                  {"epoch": 2, "teacher_short_kl": 0.4}])
        {'short_kl': {'last': 0.4, 'mean': 0.30000000000000004, 'epochs': 2}}
    """
    values: dict[str, list[float]] = {}
    for row in history:
        for key, value in row.items():
            if key.startswith("teacher_"):
                values.setdefault(key.removeprefix("teacher_"), []).append(value)
    return {k: {"last": v[-1], "mean": sum(v) / len(v), "epochs": len(v)} for k, v in values.items()}

