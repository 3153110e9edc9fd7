"""Shared machinery of the methods that keep whole-network teachers: frozen snapshots, their
forward pass, rebuilding them from a checkpoint, and the cyclic (restarted) cosine schedule of the
snapshot methods.

Snapshot Ensembles (Huang et al. 2017) and Snapshot Distillation (Yang et al. 2019) split
training into mini-generations ("cycles") of ``cycle_epochs`` epochs, anneal the learning rate
along a cosine inside each and restart it at the next; both take a snapshot of the weights at the
end of every cycle. :class:`CyclicSnapshotMethod` holds that common part; LSTSD (single) shares
:class:`SnapshotTeachers` with them, and Mean Teacher uses the snapshot helpers only.

Teachers are always run in eval mode and without gradient: batch norm uses the snapshot's own
running statistics (or, for Mean Teacher, the averaged ones) and dropout is off, so a teacher's
output on a batch depends on its weights and that batch only (not on the other samples of the
batch, as train-mode batch norm would make it).

Example:
    >>> model, x = nn.Linear(4, 3), torch.randn(2, 4)
    >>> teacher = snapshot_of(model)              # frozen copy, same device, eval mode
    >>> probs = frozen_probs(teacher, x, 2.0)     # softmax(teacher(x) / 2), no grad
    >>> teacher = refresh_snapshot(teacher, model)  # copy the current weights into it, in place
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from .base import Method
from .settings import MiniGenerations, check_int, check_weight


def snapshot_of(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model``: same device/dtype/memory format, eval mode, no gradients.

    The copy shares nothing with ``model`` (gradient buffers are dropped, not copied).

    Example:
        >>> teacher = snapshot_of(nn.Linear(4, 3))
        >>> all(not p.requires_grad for p in teacher.parameters()), teacher.training
        (True, False)
    """
    grads = {}
    for p in model.parameters():       # do not duplicate .grad into the copy
        grads[p] = p.grad
        p.grad = None
    try:
        snap = copy.deepcopy(model)
    finally:
        for p, g in grads.items():
            p.grad = g
    snap.eval()
    snap.requires_grad_(False)
    return snap


@torch.no_grad()
def refresh_snapshot(snapshot: nn.Module | None, model: nn.Module) -> nn.Module:
    """Copy ``model``'s parameters and buffers into ``snapshot`` in place (or make one if ``None``).

    Reusing the snapshot's storage avoids an allocation per epoch (LSTSD (single) refreshes its
    short-term teacher every epoch).
    """
    if snapshot is None:
        return snapshot_of(model)
    mine = list(snapshot.parameters()) + list(snapshot.buffers())
    theirs = list(model.parameters()) + list(model.buffers())
    if len(mine) != len(theirs):
        raise ValueError("refresh_snapshot: the snapshot and the model have different architectures")
    for dst, src in zip(mine, theirs):
        dst.copy_(src.detach())
    return snapshot


@torch.no_grad()
def frozen_probs(teacher: nn.Module, inputs: Any, temperature: float = 1.0) -> torch.Tensor:
    """``softmax(teacher(inputs) / T)`` in float32, computed without gradient and in eval mode."""
    if teacher.training:
        teacher.eval()
    return torch.softmax(teacher(inputs).float() / temperature, dim=1)


def cyclic_cosine_scheduler(optimizer: torch.optim.Optimizer, *, cycle_epochs: int, steps_per_epoch: int,
                            eta_min: float = 0.0) -> torch.optim.lr_scheduler.CosineAnnealingWarmRestarts:
    """Cosine annealing restarted every ``cycle_epochs`` epochs, to be stepped once per iteration.

    Example:
        >>> opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
        >>> sched = cyclic_cosine_scheduler(opt, cycle_epochs=2, steps_per_epoch=2)
        >>> lrs = []
        >>> for step in range(5):
        ...     lrs.append(round(opt.param_groups[0]["lr"], 4)); opt.step(); sched.step()
        >>> lrs                                   # restarts after 2 epochs × 2 steps
        [0.1, 0.0854, 0.05, 0.0146, 0.1]
    """
    check_int("steps_per_epoch", steps_per_epoch, 1)
    return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=cycle_epochs * steps_per_epoch, eta_min=eta_min)


class SnapshotTeachers(Method):
    """Base of the methods whose teachers are frozen snapshots of the network (attributes named in
    ``teacher_names``, each ``None`` until the first snapshot).

    The snapshots are submodules, so they move and save with the method. ``setup(model)`` keeps
    the network (not as a submodule: it is the caller's) as the template from which snapshots in a
    checkpoint are rebuilt before loading.
    """

    teacher_names: tuple[str, ...] = ()

    def setup(self, model: nn.Module, *, epochs: int | None = None, steps_per_epoch: int | None = None) -> None:
        object.__setattr__(self, "_template", model)   # bypasses nn.Module registration on purpose
        super().setup(model, epochs=epochs, steps_per_epoch=steps_per_epoch)

    def refresh_teacher(self, name: str, model: nn.Module) -> None:
        """Teacher ``name`` ← a frozen copy of ``model``'s current weights (reusing its storage)."""
        setattr(self, name, refresh_snapshot(getattr(self, name), model))

    def new_snapshot(self) -> nn.Module:
        """A snapshot with the network's architecture, to load a saved one into."""
        template = getattr(self, "_template", None)
        if template is None:
            raise RuntimeError(f"{type(self).__name__}.load_state_dict() rebuilds its teacher snapshots from the "
                               "network: call setup(model) first")
        return snapshot_of(template)

    def _closing_epoch(self, model: nn.Module | None) -> tuple[int, nn.Module]:
        epoch = self._require_epoch("end_epoch()")
        if model is None:
            raise ValueError(f"{type(self).__name__}.end_epoch needs the network: call end_epoch(model)")
        return epoch, model

    def _prepare_to_load(self, state_dict: dict[str, Any], prefix: str) -> None:
        for name in self.teacher_names:
            saved = bool(self._submodule_keys(state_dict, prefix, name))
            if saved and getattr(self, name) is None:
                setattr(self, name, self.new_snapshot())
            elif not saved:
                setattr(self, name, None)
        super()._prepare_to_load(state_dict, prefix)


class CyclicSnapshotMethod(SnapshotTeachers):
    """Common part of Snapshot Ensembles and Snapshot Distillation: the cyclic LR schedule and
    the cycle (mini-generation) bookkeeping. Subclasses take their snapshots in ``end_epoch``.

    Args:
        cycle_epochs: epochs per cycle / mini-generation (40 in the LSTSD paper, following Yang et al.).
        eta_min: the learning rate at the end of each cosine cycle (0 in Huang et al.).
    """

    copies_network = True
    schedules_lr = True

    def __init__(self, num_samples: int, num_classes: int, cycle_epochs: int = 40, eta_min: float = 0.0, *,
                 validate: bool = True) -> None:
        super().__init__(num_samples, num_classes, validate=validate)
        self.generations = MiniGenerations(cycle_epochs, "cycle_epochs")
        self.eta_min = check_weight("eta_min", eta_min)

    def configure_lr_scheduler(self, optimizer: torch.optim.Optimizer, *, epochs: int,
                               steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
        """Cosine annealing from the optimizer's LR to ``eta_min``, restarted every cycle (per iteration)."""
        return cyclic_cosine_scheduler(optimizer, cycle_epochs=self.generations.length,
                                       steps_per_epoch=steps_per_epoch, eta_min=self.eta_min)

    def hparams(self) -> dict[str, Any]:
        return {**super().hparams(), "cycle_epochs": self.generations.length, "eta_min": self.eta_min}
