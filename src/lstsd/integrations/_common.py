"""What the framework integrations share: building the method, and :class:`MethodDriver`, which
sets it up, guards its loss (it reads what the method declares it needs), refuses what cannot work,
builds its LR schedule and keeps the epoch bookkeeping that survives a checkpoint written while an
epoch is open.

Frameworks write checkpoints at points where the method's epoch may still be open: Lightning's
``ModelCheckpoint`` saves in ``on_validation_end``, which runs after the epoch's last training
batch but before ``on_train_epoch_end``; the Hugging Face Trainer saves every ``save_steps``
optimizer steps, mid-epoch or on the epoch's last step, before ``on_epoch_end``.
:class:`MethodDriver` saves the open epoch with the method's state and, on resume, either reopens
that epoch (the framework resumes inside it) or first closes it with the restored weights (the
framework resumes at the next epoch), which is what the uninterrupted run did at that point:
the weights do not change between the last optimizer step of an epoch and its end.
"""

from __future__ import annotations

import importlib
import math
import warnings
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
                      f"({'; '.join(errors)}): install it with pip install -e '.[{extra}]' in a clone of lstsd")


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


def steps_per_epoch(batches: int, accumulation: int) -> int:
    """Optimizer steps in an epoch of ``batches`` batches (a partial accumulation steps at the end)."""
    return max(1, math.ceil(batches / max(1, accumulation)))


class MethodDriver:
    """What both integrations do around a method, written once: the one-time set-up, the guards
    before a training loss, the refusal of sharded strategies, the training-set size check, the
    method's own LR schedule, the epoch hooks, and the open epoch carried through a checkpoint
    (module docstring). One per method and integration object.

    Args:
        method: the method driven.
        where: who drives it (``"LSTSDCallback"``, ``"LSTSDTrainer"``), for error messages.
        fix: how to resume properly in this framework.
        index_fix: how to give the batch's sample indices in this framework.
        inputs_fix: how to give the batch's inputs in this framework.
    """

    def __init__(self, method: Method, *, where: str, fix: str, index_fix: str, inputs_fix: str) -> None:
        self.method = method
        self.where = where
        self.fix = fix
        self.index_fix = index_fix
        self.inputs_fix = inputs_fix
        self.pending: dict[str, Any] | None = None   # a loaded state, applied after the method's setup()
        self.reopen: int | None = None               # the epoch that was open when the checkpoint was written
        self._set_up = False

    # ------------------------------------------------------------ before training
    def refuse_sharded(self, strategy: str | None) -> None:
        """Refuse a sharded strategy (FSDP, DeepSpeed; named by ``strategy``, ``None`` for none) when
        the method copies the network or runs it on the batch: a rank does not hold it whole."""
        if strategy is not None and (self.method.copies_network or self.method.needs_model_inputs):
            raise ValueError(f"{self.where}: method {self.method.name!r} copies or runs the network outside the "
                             f"training forward, which {strategy} shards across ranks; use DDP, or a method "
                             "without a teacher network (e.g. 'lstsd')")

    def check_dataset_size(self, size: int | None) -> None:
        """Refuse a training set whose size is not the ``num_samples`` the method was built for."""
        if size is not None and size != self.method.num_samples:
            raise ValueError(f"{self.where}: the method was built for num_samples={self.method.num_samples} but the "
                             f"training set has {size} samples; pass num_samples=len(train_set)")

    def lr_schedule(self, optimizer: torch.optim.Optimizer, *, epochs: int, batches: int | None, accumulation: int,
                    replaces: str | None = None) -> Any:
        """The method's own LR schedule (stepped every optimizer step), or ``None`` for a method that
        has none; ``replaces`` names a schedule the user gave, which is then warned about."""
        method = self.method
        if not method.schedules_lr:
            return None
        if replaces:
            warnings.warn(f"method {method.name!r} sets its own LR schedule (cyclic cosine per mini-generation): "
                          f"{replaces} is not used", stacklevel=3)
        if batches is None:
            raise ValueError(f"{self.where}: method {method.name!r} schedules the LR per epoch and needs the number "
                             "of batches per epoch: give a training set with a length (not an IterableDataset)")
        return method.configure_lr_scheduler(optimizer, epochs=epochs,
                                             steps_per_epoch=steps_per_epoch(batches, accumulation))

    def set_up(self, network: nn.Module, *, epochs: int | None, batches: int | None, accumulation: int,
               device: torch.device | str) -> None:
        """At the start of training: ``method.setup`` once, then the state stashed from a checkpoint,
        then the method beside the model."""
        if not self._set_up:
            steps = steps_per_epoch(batches, accumulation) if batches else None
            self.method.setup(network, epochs=epochs, steps_per_epoch=steps)
            self._set_up = True
        self.apply_pending()
        self.method.to(device)

    # ------------------------------------------------------------ the loss
    def check_loss_call(self, indices: torch.Tensor | None, inputs: Any) -> None:
        """Before a training loss: an epoch is open, and the batch carries what the method declares
        it needs (indices, inputs), each refused with this framework's fix."""
        method = self.method
        if method.epoch is None:
            raise RuntimeError(f"{self.where}: no epoch is open; compute the method's loss in a training step while "
                               f"the framework trains with {self.where}")
        if indices is None and method.needs_indices:
            raise ValueError(f"{self.where}: method {method.name!r} keeps per-sample soft targets and needs each "
                             f"sample's index: {self.index_fix}")
        if inputs is None and method.needs_model_inputs:
            raise ValueError(f"{self.where}: method {method.name!r} runs a teacher network on the batch: "
                             f"{self.inputs_fix}")

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
        """Start the framework's ``epoch`` (0-based), first closing an epoch left open by a checkpoint.

        The order of epochs is checked by :meth:`lstsd.Method.start_epoch`, with this framework's fix.
        """
        method = self.method
        if self.reopen is not None:
            left_open, self.reopen = self.reopen, None
            if epoch == left_open + 1:     # written after the epoch's last step: close it as the run did
                method.start_epoch(left_open)
                method.end_epoch(network)
            elif epoch != left_open:
                raise RuntimeError(f"{self.where}: the checkpoint was written during epoch {left_open}, but the "
                                   f"framework resumes at epoch {epoch}; resume from the checkpoint's own run")
        try:
            method.start_epoch(epoch, resume_fix=self.fix)
        except (RuntimeError, ValueError) as err:
            raise RuntimeError(f"{self.where}: {err}") from None

    def end(self, network: nn.Module) -> dict[str, float]:
        """Close the epoch in progress (a no-op if none is open); return its teacher diagnostics
        (:meth:`lstsd.Method.teacher_diagnostics`, summed over the processes under torch.distributed:
        every rank must call this), ``{}`` for a method without a teacher or when no epoch was open."""
        if self.method.epoch is None:
            return {}
        teachers = self.method.teacher_diagnostics(sum_over_processes)
        self.method.end_epoch(network)
        return teachers
