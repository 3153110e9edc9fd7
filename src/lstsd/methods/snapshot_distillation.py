"""Snapshot Distillation (Yang, Xie, Qiao & Yuille, "Snapshot Distillation: Teacher-Student
Optimization in One Generation", CVPR 2019).

The LSTSD paper, "Baselines":

    Similar to Snapshot Ensembles, **Snapshot Distillation** also divides the overall training
    process into several mini-generations. In each mini-generation, the last snapshot in the
    previous mini-generation is used as a teacher. To assure a difference between student and
    teacher, a cyclic learning rate is applied in each mini-generation.

Mapping onto this file (m = epoch // cycle_epochs, 0-based)::

    configure_lr_scheduler   cosine annealing restarted every cycle_epochs epochs, per iteration
                             (shared with Snapshot Ensembles: lstsd.methods._snapshots)
    loss, m = 0              L = CE
    loss, m > 0              z = softmax(f(x; θ_{m−1}) / T)   the frozen teacher on the same batch
                             L = CE + λ·KL(z ‖ softmax(f(x; θ) / T))
    end_epoch                if (epoch + 1) % cycle_epochs == 0: θ_m ← θ (the next mini-generation's teacher)

Choices: the teacher runs in eval mode without gradient; the LSTSD paper uses 40-epoch
mini-generations (following Yang et al.) and T = 2; the teacher weight ``lambda_teacher``
defaults to 1.0 (the LSTSD paper grid-searched it without reporting the value). Yang et al.'s
extra refinements (a teacher-confidence filter on the soft targets, a schedule that does not
anneal to zero) are not part of the LSTSD paper's description and are left out.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..losses import KLDirection, cross_entropy
from ._snapshots import CyclicSnapshotMethod, frozen_probs
from .base import LossParts
from .settings import Distillation, check_weight


class SnapshotDistillation(CyclicSnapshotMethod):
    """Snapshot Distillation: the snapshot at the end of the previous mini-generation teaches.

    Args:
        num_samples: training-set size N.
        num_classes: number of classes C.
        cycle_epochs: epochs per mini-generation (paper setting: 40).
        eta_min: LR at the end of each cycle.
        lambda_teacher: λ, weight of the distillation term (default 1.0).
        temperature: T softening teacher and student in the distillation term (paper: 2).
        kl_direction: ``"teacher_student"`` (default) or ``"student_teacher"``.
        t2_scale: multiply the distillation term by T².
        validate: check every batch.

    Example:
        >>> model = nn.Linear(5, 3)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> x, y, idx = torch.randn(8, 5), torch.randint(0, 3, (8,)), torch.arange(8)
        >>> method = SnapshotDistillation(num_samples=8, num_classes=3, cycle_epochs=1)
        >>> method.setup(model)
        >>> sched = method.configure_lr_scheduler(opt, epochs=2, steps_per_epoch=2)
        >>> for epoch in range(2):
        ...     method.start_epoch(epoch)
        ...     for b in (slice(0, 4), slice(4, 8)):      # two steps per epoch
        ...         loss = method.loss(model(x[b]), y[b], idx[b], model=model, inputs=x[b])
        ...         opt.zero_grad(); loss.backward(); opt.step(); sched.step()
        ...     method.end_epoch(model)
        >>> bool(method.loss_components()["kd"] > 0)    # the first cycle's snapshot taught in the second
        True
    """

    name = "snapshot_distillation"
    extra_forward_passes = 1
    needs_model_inputs = True
    teacher_names = ("teacher",)

    def __init__(self, num_samples: int, num_classes: int, cycle_epochs: int = 40, eta_min: float = 0.0,
                 lambda_teacher: float = 1.0, temperature: float = 2.0,
                 kl_direction: KLDirection = "teacher_student", t2_scale: bool = False,
                 validate: bool = True) -> None:
        super().__init__(num_samples, num_classes, cycle_epochs, eta_min, validate=validate)
        self.lambda_teacher = check_weight("lambda_teacher", lambda_teacher)
        self.distillation = Distillation(temperature, kl_direction, t2_scale)
        self.teacher: nn.Module | None = None   # θ_{m−1}, frozen for the whole mini-generation m

    def compute_loss(self, epoch: int, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None, *,
                     model: nn.Module | None, inputs: Any) -> tuple[torch.Tensor, LossParts]:
        """CE in the first mini-generation; ``CE + λ·KL(teacher ‖ student)`` afterwards."""
        ce = cross_entropy(logits, targets)
        weight = 0.0
        if self.generations.index(epoch) > 0 and self.teacher is not None:
            weight = self.lambda_teacher
            z = frozen_probs(self.teacher, inputs, self.distillation.temperature)
            kd = self.distillation.kl(logits, z)
            loss = ce + weight * kd
            age = epoch - (self.generations.index(epoch) * self.generations.length - 1)
            self.teacher_monitor.record("snapshot", z, logits, targets, temperature=self.distillation.temperature,
                                        age=age)
        else:
            kd = torch.zeros((), device=ce.device)
            loss = ce
        return loss, {"ce": (ce, 1.0), "kd": (kd, weight)}

    def end_epoch(self, model: nn.Module | None = None) -> None:
        """At the end of a mini-generation, its last snapshot becomes the next one's teacher."""
        epoch, model = self._closing_epoch(model)
        if self.generations.is_last_epoch(epoch):
            self.refresh_teacher("teacher", model)
        super().end_epoch(model)

    def hparams(self) -> dict[str, Any]:
        return {**super().hparams(), "lambda_teacher": self.lambda_teacher, **self.distillation.hparams()}
