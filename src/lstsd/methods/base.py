"""The interface every training policy implements; see :mod:`lstsd.methods` for the overview."""

from __future__ import annotations

import abc
import math
import warnings
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_indices, check_logits, check_targets


class Method(abc.ABC):
    """Base class of a one-generation training policy (vanilla, LSTSD, the paper's baselines).

    A trainer drives a method through these hooks, in this order::

        method.setup(model, epochs=E, steps_per_epoch=S)      # once, before training / resuming
        scheduler = method.configure_lr_scheduler(opt, epochs=..., steps_per_epoch=...)
        for epoch in range(start, epochs):
            method.start_epoch(epoch)
            for x, y, idx in loader:
                logits = model(x)
                loss = method.loss(logits, y, idx, model=model, inputs=x)
                loss.backward(); opt.step(); opt.zero_grad()
                method.end_step(model)
                scheduler.step()                              # schedules step every iteration
            method.end_epoch(model)
            probs = method.eval_predictions(model, x_test)    # {"model": ..., maybe "teacher"/"ensemble"}

    Subclasses implement :meth:`loss` and override the hooks they need. ``state_dict`` must hold
    everything needed to continue bit-identically (banks, teacher weights, snapshots, counters).

    Attributes:
        name: the registry name (set by :func:`lstsd.methods.create_method`).
        extra_forward_passes: network forward passes per training step beyond the student's own
            (0 for LSTSD; 1 for methods that run a teacher on the batch).
        needs_model_inputs: ``loss`` must be given ``model=`` and ``inputs=`` (teacher forwards).
    """

    name: str = "method"
    extra_forward_passes: ClassVar[int] = 0
    needs_model_inputs: ClassVar[bool] = False

    def __init__(self, num_samples: int, num_classes: int, *, validate: bool = True) -> None:
        if not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive int (the training-set size), got {num_samples!r}")
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
        self.num_samples = num_samples
        self.num_classes = num_classes
        self.validate = validate
        self.epoch: int | None = None   # the epoch in progress, None between epochs
        self.next_epoch = 0             # the epoch start_epoch expects next
        self._components: dict[str, torch.Tensor] = {}

    # ------------------------------------------------------------------ hooks
    def setup(self, model: nn.Module, *, epochs: int | None = None, steps_per_epoch: int | None = None) -> None:
        """Called once before training (and before :meth:`load_state_dict` on resume).

        Receives the network being trained (teachers copy it here) and, when the trainer knows
        them, the run's length (for schedules that depend on the total, e.g. PS-KD's α_t).
        """

    def configure_lr_scheduler(self, optimizer: torch.optim.Optimizer, *, epochs: int,
                               steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler | None:
        """The LR schedule this method requires, stepped once per iteration; ``None`` = the trainer's."""
        return None

    def start_epoch(self, epoch: int) -> None:
        """Begin ``epoch`` (0-based). Epochs must run in order; resume with :meth:`load_state_dict`."""
        if not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        if self.epoch is not None:
            raise RuntimeError(f"start_epoch({epoch}) called while epoch {self.epoch} is still open; "
                               "call end_epoch() first")
        if epoch != self.next_epoch:
            if self.next_epoch != 0:
                raise ValueError(
                    f"epochs must run in order: expected start_epoch({self.next_epoch}), got {epoch}. "
                    "To resume a run, load the policy's state_dict from the same checkpoint as the model")
            warnings.warn(
                f"{type(self).__name__} starts at epoch {epoch} with no history; if you are resuming a run, "
                "load the policy's state_dict saved with the model, or its soft targets are lost", stacklevel=2)
        self.epoch = epoch

    @abc.abstractmethod
    def loss(self, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor, *,
             model: nn.Module | None = None, inputs: Any = None) -> torch.Tensor:
        """The training loss of one mini-batch (a scalar); also records what the method needs."""

    def end_step(self, model: nn.Module) -> None:
        """Called after every optimizer step (Mean Teacher updates its EMA here)."""

    def end_epoch(self, model: nn.Module | None = None) -> None:
        """Close the epoch opened by :meth:`start_epoch` (snapshots are taken here)."""
        self._require_epoch("end_epoch()")
        self.next_epoch = self.epoch + 1
        self.epoch = None

    @torch.no_grad()
    def eval_predictions(self, model: nn.Module, inputs: Any) -> dict[str, torch.Tensor]:
        """Class probabilities of every predictor this method reports, the headline one first.

        The default is the network itself, ``{"model": softmax(model(inputs))}``; Snapshot
        Ensembles add ``"ensemble"``, Mean Teacher ``"teacher"``. The caller sets eval mode.
        """
        return {"model": torch.softmax(model(inputs).float(), dim=1)}

    def loss_components(self) -> dict[str, torch.Tensor]:
        """Detached scalar tensors of the last loss's parts (e.g. ``ce``, ``long``, ``short``).

        They stay on the device, so logging them costs no synchronisation until read.
        """
        return dict(self._components)

    # ------------------------------------------------------------------ state
    def hparams(self) -> dict[str, Any]:
        """The settings a checkpoint must agree on to be resumed by this method."""
        return {"num_samples": self.num_samples, "num_classes": self.num_classes}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly; subclasses extend it."""
        return {"method": self.name, "hparams": self.hparams(), "next_epoch": self.next_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; refuse one saved by another method or other settings."""
        if not isinstance(state, dict) or "method" not in state or "hparams" not in state:
            raise ValueError("not a method state_dict (expected keys 'method', 'hparams', 'next_epoch')")
        if state["method"] != self.name:
            raise ValueError(f"this checkpoint was written by method {state['method']!r}, not {self.name!r}")
        mine, theirs = self.hparams(), state["hparams"]
        diff = {k: (theirs.get(k), mine.get(k)) for k in set(mine) | set(theirs) if theirs.get(k) != mine.get(k)}
        if diff:
            listing = ", ".join(f"{k}: saved {a!r} vs now {b!r}" for k, (a, b) in sorted(diff.items()))
            raise ValueError(f"cannot resume {self.name}: the checkpoint comes from a run with other settings "
                             f"({listing}); build the method with the saved settings")
        if self.epoch is not None:
            raise RuntimeError("load_state_dict() called in the middle of an epoch; call it between epochs")
        self.next_epoch = int(state["next_epoch"])

    # ------------------------------------------------------------------ helpers
    def _require_epoch(self, what: str) -> int:
        if self.epoch is None:
            raise RuntimeError(f"{what} called outside an epoch; call start_epoch(epoch) first")
        return self.epoch

    def _check_batch(self, logits: torch.Tensor, targets: torch.Tensor,
                     indices: torch.Tensor | None) -> torch.Tensor | None:
        """Validate a batch (when ``self.validate``); return the indices as int64."""
        if not self.validate:
            return None if indices is None else indices.long()
        check_logits(logits, num_classes=self.num_classes)
        check_targets(targets, logits.shape[0], self.num_classes)
        if indices is None:
            return None
        return check_indices(indices, self.num_samples, batch_size=logits.shape[0])

    @staticmethod
    def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy at T = 1, computed in float32 whatever the autocast dtype."""
        return F.cross_entropy(logits.float(), targets)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hparams().items())
        return f"{type(self).__name__}({args})"


def check_weight(name: str, value: float) -> float:
    """Return a loss weight as float; raise ``ValueError`` unless it is finite and >= 0."""
    v = float(value)
    if not (v >= 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v
