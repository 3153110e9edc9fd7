"""What the framework integrations share: building the method, checking what it needs from a
batch, and the epoch bookkeeping that survives a checkpoint written while an epoch is open.

Frameworks write checkpoints at points where the method's epoch may still be open: Lightning's
``ModelCheckpoint`` saves in ``on_validation_end``, which runs after the epoch's last training
batch but before ``on_train_epoch_end``; the Hugging Face Trainer saves every ``save_steps``
optimizer steps, mid-epoch or on the epoch's last step, before ``on_epoch_end``.
:class:`EpochDriver` saves the open epoch with the method's state and, on resume, either reopens
that epoch (the framework resumes inside it) or first closes it with the restored weights (the
framework resumes at the next epoch), which is what the uninterrupted run did at that point:
the weights do not change between the last optimizer step of an epoch and its end.
"""

from __future__ import annotations

import importlib
import inspect
import math
from types import ModuleType
from typing import Any

import torch
from torch import nn

from ..distributed import sum_over_processes
from ..methods import Method, create_method

STATE_VERSION = 1


def import_framework(*names: str, extra: str) -> ModuleType:
    """Import the first importable of ``names``; a one-line ImportError naming the extra otherwise."""
    errors = []
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError as err:   # not installed, or installed but broken (say which)
            errors.append(f"{name}: {err}")
    raise ImportError(f"lstsd.integrations.{extra} needs {' or '.join(names)}, which cannot be imported "
                      f"({'; '.join(errors)}): install it with pip install 'lstsd[{extra}]'")


def build_method(method: str | Method, *, num_samples: int | None, num_classes: int | None,
                 settings: dict[str, Any] | None, where: str) -> Method:
    """``method`` itself if it is a :class:`Method`, else the registered method of that name."""
    settings = dict(settings or {})
    if isinstance(method, Method):
        if settings:
            raise ValueError(f"{where}: settings {sorted(settings)} were given with a ready-built method object; "
                             "pass the method's name instead, or build the object with them")
        for name, given, actual in (("num_samples", num_samples, method.num_samples),
                                    ("num_classes", num_classes, method.num_classes)):
            if given is not None and given != actual:
                raise ValueError(f"{where}: {name}={given} but the method object was built with {name}={actual}")
        return method
    if not isinstance(method, str):
        raise TypeError(f"{where}: method must be a registered name (see lstsd.available_methods()) or an "
                        f"lstsd.Method, got {type(method).__name__}")
    if num_samples is None or num_classes is None:
        missing = " and ".join(n for n, v in (("num_samples", num_samples), ("num_classes", num_classes)) if v is None)
        raise ValueError(f"{where}: method {method!r} needs {missing} (the training set's size and the class count)")
    return create_method(method, num_samples=num_samples, num_classes=num_classes, **settings)


def needs_indices(method: Method) -> bool:
    """Whether ``method.loss`` requires the batch's sample indices (it keeps per-sample state)."""
    try:
        param = inspect.signature(type(method).loss).parameters["indices"]
    except (KeyError, TypeError, ValueError):
        return True
    return param.default is inspect.Parameter.empty


def method_schedules_lr(method: Method) -> bool:
    """Whether the method brings its own LR schedule (the snapshot methods' cyclic cosine)."""
    if type(method).configure_lr_scheduler is Method.configure_lr_scheduler:
        return False
    probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    return method.configure_lr_scheduler(probe, epochs=1, steps_per_epoch=1) is not None


def steps_per_epoch(batches: int, accumulation: int) -> int:
    """Optimizer steps in an epoch of ``batches`` batches (a partial accumulation steps at the end)."""
    return max(1, math.ceil(batches / max(1, accumulation)))


class EpochDriver:
    """Calls ``start_epoch``/``end_epoch`` from a framework's epoch numbers and carries an open epoch
    through a checkpoint (module docstring). One per method and integration object.
    """

    def __init__(self, method: Method, *, where: str, fix: str) -> None:
        self.method = method
        self.where = where            # who drives it, for error messages
        self.fix = fix                # how to resume properly in this framework
        self.pending: dict[str, Any] | None = None   # a loaded state, applied after the method's setup()
        self.reopen: int | None = None               # the epoch that was open when the checkpoint was written

    # ------------------------------------------------------------ checkpoint
    def state_dict(self) -> dict[str, Any]:
        """The method's full state (banks, teachers, settings) and the epoch open at this moment."""
        return {"lstsd_state_version": STATE_VERSION, "method": self.method.state_dict(),
                "open_epoch": self.method.epoch}

    def stash(self, state: Any) -> None:
        """Keep a state from a checkpoint until :meth:`apply_pending` (after the method's setup)."""
        if not isinstance(state, dict) or "method" not in state or "open_epoch" not in state:
            raise ValueError(f"{self.where}: the checkpoint's lstsd entry is not a method state "
                             f"(keys: {sorted(state) if isinstance(state, dict) else type(state).__name__})")
        self.pending = state

    def apply_pending(self) -> None:
        """Load the stashed state into the method (call after ``method.setup``)."""
        if self.pending is None:
            return
        state, self.pending = self.pending, None
        self.method.epoch = None      # an interrupted fit may have left one open; the checkpoint replaces it
        self.method.load_state_dict(state["method"])
        self.reopen = state["open_epoch"]

    # ------------------------------------------------------------ epochs
    def begin(self, epoch: int, network: nn.Module) -> None:
        """Start the framework's ``epoch`` (0-based), first closing an epoch left open by a checkpoint."""
        method = self.method
        if self.reopen is not None:
            left_open, self.reopen = self.reopen, None
            if epoch == left_open + 1:     # written after the epoch's last step: close it as the run did
                method.start_epoch(left_open)
                method.end_epoch(network)
            elif epoch != left_open:
                raise RuntimeError(f"{self.where}: the checkpoint was written during epoch {left_open}, but the "
                                   f"framework resumes at epoch {epoch}; resume from the checkpoint's own run")
        if method.epoch is not None:
            raise RuntimeError(f"{self.where}: epoch {method.epoch} is still open at the start of epoch {epoch} "
                               "(a previous fit was interrupted?); build a new method object or resume from a "
                               "checkpoint")
        if method.next_epoch != epoch:
            if method.next_epoch == 0:
                raise RuntimeError(f"{self.where}: training starts at epoch {epoch} but the method has no history "
                                   f"(its soft targets were not restored); {self.fix}")
            raise RuntimeError(f"{self.where}: the method has trained {method.next_epoch} epochs but the framework "
                               f"starts epoch {epoch}; {self.fix}")
        method.start_epoch(epoch)

    def end(self, network: nn.Module) -> dict[str, float]:
        """Close the epoch in progress (a no-op if none is open); return its teacher diagnostics
        (:meth:`lstsd.Method.teacher_diagnostics`, summed over the processes under torch.distributed:
        every rank must call this), ``{}`` for a method without a teacher or when no epoch was open."""
        if self.method.epoch is None:
            return {}
        teachers = self.method.teacher_diagnostics(sum_over_processes)
        self.method.end_epoch(network)
        return teachers
