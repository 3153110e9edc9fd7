"""Shared machinery of the methods that keep whole-network teachers: frozen snapshots, their
forward pass, their checkpoint form, and the cyclic (restarted) cosine schedule of the snapshot
methods.

Snapshot Ensembles (Huang et al. 2017) and Snapshot Distillation (Yang et al. 2019) split
training into mini-generations ("cycles") of ``cycle_epochs`` epochs, anneal the learning rate
along a cosine inside each and restart it at the next; both take a snapshot of the weights at the
end of every cycle. :class:`CyclicSnapshotMethod` holds that common part; LSTSD (single) and
Mean Teacher use the snapshot helpers only.

Teachers are always run in eval mode and without gradient: batch norm uses the snapshot's own
running statistics (or, for Mean Teacher, the averaged ones) and dropout is off, so a teacher's
output on a batch depends on its weights and that batch only (not on the other samples of the
batch, as train-mode batch norm would make it).

Example:
    >>> teacher = snapshot_of(model)             # frozen copy, same device, eval mode
    >>> probs = frozen_probs(teacher, x, 2.0)    # softmax(teacher(x) / 2), no grad
    >>> refresh_snapshot(teacher, model)         # copy the current weights into it, in place
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from .base import Method


def snapshot_of(model: nn.Module) -> nn.Module:
    """A frozen copy of ``model``: same device/dtype/memory format, eval mode, no gradients.

    The copy shares nothing with ``model`` (gradient buffers are dropped, not copied).

    Example:
        >>> teacher = snapshot_of(model)
        >>> all(not p.requires_grad for p in teacher.parameters())
        True
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


def require_inputs(method: Method, inputs: Any) -> None:
    """Raise a clear error when a teacher-forward method is called without ``inputs=``."""
    if inputs is None:
        raise ValueError(f"{type(method).__name__} runs a teacher on the batch: call "
                         "loss(logits, targets, indices, model=model, inputs=x) with the batch's inputs")


def snapshot_state(snapshot: nn.Module | None) -> dict[str, torch.Tensor] | None:
    """The checkpoint form of a snapshot: a cloned ``state_dict`` (or ``None``)."""
    if snapshot is None:
        return None
    return {k: v.detach().clone() for k, v in snapshot.state_dict().items()}


def restore_snapshot(template: nn.Module | None, state: dict[str, torch.Tensor] | None,
                     into: nn.Module | None = None) -> nn.Module | None:
    """Rebuild a snapshot from :func:`snapshot_state` output, with ``template``'s architecture.

    ``into`` (an existing snapshot) is reused when given. ``template`` is the network passed to
    ``setup`` (the method must be set up before ``load_state_dict``).
    """
    if state is None:
        return None
    if into is None:
        if template is None:
            raise RuntimeError("load_state_dict() needs the network: call setup(model) first")
        into = snapshot_of(template)
    into.load_state_dict(state)
    return into


def cyclic_cosine_lr(step: int, base_lr: float, cycle_steps: int, eta_min: float = 0.0) -> float:
    """Closed form of the restarted cosine schedule after ``step`` scheduler steps (0-based).

    ``eta_min + (base_lr - eta_min)·(1 + cos(π·(step mod cycle_steps)/cycle_steps))/2``, Huang
    et al. (2017), Eq. (2), with ``eta_min = 0``.
    """
    t = step % cycle_steps
    return eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * t / cycle_steps)) / 2


def cyclic_cosine_scheduler(optimizer: torch.optim.Optimizer, *, cycle_epochs: int, steps_per_epoch: int,
                            eta_min: float = 0.0) -> torch.optim.lr_scheduler.CosineAnnealingWarmRestarts:
    """Cosine annealing restarted every ``cycle_epochs`` epochs, to be stepped once per iteration.

    Example:
        >>> sched = cyclic_cosine_scheduler(opt, cycle_epochs=40, steps_per_epoch=391)
        >>> for x, y, idx in loader: ...; opt.step(); sched.step()
    """
    if not isinstance(steps_per_epoch, int) or steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be a positive int, got {steps_per_epoch!r}")
    return torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=cycle_epochs * steps_per_epoch, eta_min=eta_min)


class CyclicSnapshotMethod(Method):
    """Common part of Snapshot Ensembles and Snapshot Distillation: the cyclic LR schedule and
    the cycle (mini-generation) bookkeeping. Subclasses take their snapshots in ``end_epoch``.

    Args:
        cycle_epochs: epochs per cycle / mini-generation (40 in the LSTSD paper, following Yang et al.).
        eta_min: the learning rate at the end of each cosine cycle (0 in Huang et al.).
    """

    def __init__(self, num_samples: int, num_classes: int, cycle_epochs: int = 40, eta_min: float = 0.0, *,
                 validate: bool = True) -> None:
        super().__init__(num_samples, num_classes, validate=validate)
        if not isinstance(cycle_epochs, int) or isinstance(cycle_epochs, bool) or cycle_epochs < 1:
            raise ValueError(f"cycle_epochs must be an int >= 1, got {cycle_epochs!r}")
        eta = float(eta_min)
        if not (eta >= 0 and math.isfinite(eta)):
            raise ValueError(f"eta_min must be a finite number >= 0, got {eta_min!r}")
        self.cycle_epochs = cycle_epochs
        self.eta_min = eta
        self._model: nn.Module | None = None   # the network, the template of restored snapshots

    def setup(self, model: nn.Module, *, epochs: int | None = None, steps_per_epoch: int | None = None) -> None:
        self._model = model

    def configure_lr_scheduler(self, optimizer: torch.optim.Optimizer, *, epochs: int,
                               steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
        """Cosine annealing from the optimizer's LR to ``eta_min``, restarted every cycle (per iteration)."""
        return cyclic_cosine_scheduler(optimizer, cycle_epochs=self.cycle_epochs,
                                       steps_per_epoch=steps_per_epoch, eta_min=self.eta_min)

    def mini_generation(self, epoch: int) -> int:
        """0-based cycle of ``epoch``: ``epoch // cycle_epochs``."""
        return epoch // self.cycle_epochs

    def is_last_epoch_of_cycle(self, epoch: int) -> bool:
        """Whether a snapshot is taken at the end of ``epoch``."""
        return (epoch + 1) % self.cycle_epochs == 0

    def _closing_epoch(self, model: nn.Module | None) -> tuple[int, nn.Module]:
        epoch = self._require_epoch("end_epoch()")
        if model is None:
            raise ValueError(f"{type(self).__name__}.end_epoch needs the network: call end_epoch(model)")
        return epoch, model

    def hparams(self) -> dict[str, Any]:
        return {**super().hparams(), "cycle_epochs": self.cycle_epochs, "eta_min": self.eta_min}
