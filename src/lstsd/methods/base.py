"""The interface every method implements; see :mod:`lstsd.methods` for the overview."""

from __future__ import annotations

import abc
import warnings
from typing import Any, ClassVar

import torch
from torch import nn

from .._checks import check_batch, check_sizes
from ..diagnostics import TeacherMonitor
from ..distributed import RowExchange

class Method(nn.Module, abc.ABC):
    """Base class of a one-generation teacher–student method (vanilla, LSTSD, the paper's baselines).

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

    Subclasses implement :meth:`loss` and override the hooks they need.

    A method is an ``nn.Module`` (as timm's EMA models are): its banks, counters and teacher
    networks are registered buffers and submodules, so ``.to(device)``, ``state_dict()`` and
    ``load_state_dict()`` are PyTorch's own and hold everything needed to continue bit-identically.
    The settings and the epoch counter travel as the module's extra state; loading checks them
    first and refuses a checkpoint of another method or other settings. Per-sample state follows
    the logits' device by itself on the first :meth:`loss` of a batch on another device.
    Subclasses that create teachers lazily (snapshots) rebuild them before loading in
    :meth:`_prepare_to_load`. A method is not called like a network: it has no ``forward``. Under
    DDP keep it outside the wrapped module (or pass ``broadcast_buffers=False``): DDP would
    otherwise broadcast its banks from rank 0 at every forward.

    Attributes:
        name: the registry name (set by :func:`lstsd.methods.create_method`).
        extra_forward_passes: network forward passes per training step beyond the student's own
            (0 for LSTSD; 1 for methods that run a teacher on the batch). A class attribute that an
            instance may override when its settings change it (LSTSD's ``record_targets``).
        needs_model_inputs: ``loss`` must be given ``model=`` and ``inputs=`` (teacher forwards);
            an instance may override it as well.
        hparams_added: settings added after checkpoints had been written without them, each with
            the value those checkpoints were trained with; loading such a checkpoint reads it so.
    """

    name: str = "method"
    extra_forward_passes: int = 0
    needs_model_inputs: bool = False
    hparams_added: ClassVar[dict[str, Any]] = {}

    def __init__(self, num_samples: int, num_classes: int, *, validate: bool = True) -> None:
        super().__init__()
        check_sizes(num_samples, num_classes)
        self.num_samples = num_samples
        self.num_classes = num_classes
        self.validate = validate
        # Under torch.distributed, per-sample rows to write are exchanged so that banks stay identical
        # on every rank; set ``method.row_exchange = RowExchange(group)`` for another process group.
        self.row_exchange = RowExchange()
        # Teacher quality / difference from the student, per epoch (lstsd.diagnostics).
        self.teacher_monitor = TeacherMonitor()
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
                    "To resume a run, load the method's state_dict from the same checkpoint as the model")
            warnings.warn(
                f"{type(self).__name__} starts at epoch {epoch} with no history; if you are resuming a run, "
                "load the method's state_dict saved with the model, or its soft targets are lost", stacklevel=2)
        self.epoch = epoch
        self.teacher_monitor.reset()

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

    def teacher_diagnostics(self, reduce: Any = None) -> dict[str, float]:
        """Each teacher's quality, difference from the student, coverage and age over the epoch so
        far (:mod:`lstsd.diagnostics`; one host synchronisation). ``{}`` for a method without a teacher.

        ``reduce`` sums the raw per-process sums under torch.distributed (e.g. an all-reduce).
        """
        return self.teacher_monitor.summary(reduce)

    def loss_components(self) -> dict[str, torch.Tensor]:
        """Detached scalar tensors of the last loss's parts (e.g. ``ce``, ``long``, ``short``).

        They stay on the device, so logging them costs no synchronisation until read.
        """
        return dict(self._components)

    # ------------------------------------------------------------------ state
    def hparams(self) -> dict[str, Any]:
        """The settings a checkpoint must agree on to be resumed by this method."""
        return {"num_samples": self.num_samples, "num_classes": self.num_classes}

    def get_extra_state(self) -> dict[str, Any]:
        """Saved in ``state_dict()`` beside the tensors: the method, its settings, the next epoch."""
        return {"method": self.name, "hparams": self.hparams(), "next_epoch": self.next_epoch}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.next_epoch = int(state["next_epoch"])

    def check_compatible(self, extra_state: Any) -> None:
        """Raise ``ValueError`` unless ``extra_state`` (from :meth:`get_extra_state`) is this method's
        with the same settings; called by ``load_state_dict`` before anything is copied."""
        if not isinstance(extra_state, dict) or not {"method", "hparams", "next_epoch"} <= set(extra_state):
            raise ValueError("not a method state_dict: it lacks the method's '_extra_state' "
                             "(method, hparams, next_epoch); pass the dict that method.state_dict() returned")
        if extra_state["method"] != self.name:
            raise ValueError(f"this checkpoint was written by method {extra_state['method']!r}, not {self.name!r}")
        mine, theirs = self.hparams(), {**self.hparams_added, **extra_state["hparams"]}
        diff = {k: (theirs.get(k), mine.get(k)) for k in set(mine) | set(theirs) if theirs.get(k) != mine.get(k)}
        if diff:
            listing = ", ".join(f"{k}: saved {a!r} vs now {b!r}" for k, (a, b) in sorted(diff.items()))
            raise ValueError(f"cannot resume {self.name}: the checkpoint comes from a run with other settings "
                             f"({listing}); build the method with the saved settings")

    def _prepare_to_load(self, state_dict: dict[str, Any], prefix: str) -> None:
        """Create (or drop) lazily built submodules so that they match the keys of ``state_dict``."""

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Runs before the submodules load (PyTorch loads a module, then its children), so a
        # checkpoint of another method or other settings is refused before anything is copied,
        # whether this method is loaded directly or as a submodule of a user's module.
        self.check_compatible(state_dict.get(prefix + "_extra_state"))
        if self.epoch is not None:
            raise RuntimeError("load_state_dict() called in the middle of an epoch; call it between epochs")
        self._prepare_to_load(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _submodule_keys(self, state_dict: dict[str, Any], prefix: str, name: str) -> set[str]:
        """What follows ``prefix + name + "."`` in the keys of ``state_dict`` (for :meth:`_prepare_to_load`)."""
        head = f"{prefix}{name}."
        return {k[len(head):] for k in state_dict if k.startswith(head)}

    def _follow_device(self, device: torch.device) -> None:
        """Move the method's buffers and teachers to ``device`` if they are elsewhere (one check per step)."""
        first = next(self.buffers(), None)
        if first is not None and first.device != device:
            self.to(device)

    # ------------------------------------------------------------------ helpers
    def _require_epoch(self, what: str) -> int:
        if self.epoch is None:
            raise RuntimeError(f"{what} called outside an epoch; call start_epoch(epoch) first")
        return self.epoch

    def _check_batch(self, logits: torch.Tensor, targets: torch.Tensor,
                     indices: torch.Tensor | None) -> torch.Tensor | None:
        """Validate a batch (when ``self.validate``: shapes, ranges, repeats, finite logits), bring the
        method's state to the logits' device, and return the indices as int64 on that device."""
        if self.validate:   # one host synchronisation for every check
            indices = check_batch(logits, targets, indices, num_samples=self.num_samples, num_classes=self.num_classes)
        self._follow_device(logits.device)
        return None if indices is None else indices.to(device=logits.device, dtype=torch.long)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hparams().items())
        return f"{type(self).__name__}({args})"

