"""LSTSD (single): the "numerous teachers" ablation of the LSTSD paper (Jiang et al., AAAI 2020,
Table 3), in which every sample shares the same two whole-network teachers.

The LSTSD paper, "Analysis of Model Variants":

    To validate whether the model benefits from numerous teachers, we compare LSTSD with a
    variant in which all samples learn from a single teacher. Specifically, rather than taking
    the snapshot when a sample was selected as training data as the teacher model for the
    sample, we use the last snapshot in the previous mini-generation as the long-term teacher
    and the last snapshot in the previous epoch as the short-term teacher, such that all samples
    share the same long-term teacher and short-term teacher in every epoch (denoting this method
    as *LSTSD (single)* in Table 3).

Mapping onto Algorithm 1 (m = epoch // E, 0-based; the loss is :func:`lstsd.methods.lstsd_loss`)::

    line 5      L^C  = CE(f(x; θ), y)
    lines 6-9   if m > 0:  z^L = softmax(f(x; θ^L) / T),  z^S = softmax(f(x; θ^S) / T)   same batch
                           L = L^C + λ^L·KL(z^L ‖ p) + λ^S·KL(z^S ‖ p)
    line 11     else:      L = L^C
    line 14     θ^S ← θ   at the end of every epoch                      (snapshot, not probabilities)
    lines 15-16 θ^L ← θ   at the end of the last epoch of a mini-generation

Unlike LSTSD, the teachers are networks run on the batch, hence two extra forward passes per step
from the second mini-generation on. They run in eval mode without gradient. In the first epoch of
each mini-generation both teachers are the same snapshot. Defaults are LSTSD's: E = 6,
λ^L = 2.4, λ^S = 4.0, T = 2.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..losses import KLDirection
from ._snapshots import SnapshotTeachers, frozen_probs
from .base import LossParts
from .lstsd import LongShortSettings


class LSTSDSingle(LongShortSettings, SnapshotTeachers):
    """LSTSD with one long-term and one short-term snapshot shared by all samples (Table 3).

    Args:
        num_samples: training-set size N.
        num_classes: number of classes C.
        generation_epochs: E, epochs per mini-generation (paper: 6).
        lambda_long: λ^L, weight of the long-term teacher (paper: 2.4).
        lambda_short: λ^S, weight of the short-term teacher (paper: 4.0).
        temperature: T of the distillation terms (paper: 2).
        kl_direction: ``"teacher_student"`` (default) or ``"student_teacher"``.
        t2_scale: multiply the distillation terms by T².
        rampup_epochs: ramp λ^L and λ^S in over the first R distilled epochs (0: off, the paper;
            see :class:`~lstsd.methods.LSTSD`).
        validate: check every batch.

    Example:
        >>> model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> x, y, idx = torch.randn(16, 5), torch.randint(0, 3, (16,)), torch.arange(16)
        >>> method = LSTSDSingle(num_samples=16, num_classes=3, generation_epochs=1)
        >>> method.setup(model)
        >>> for epoch in range(2):
        ...     method.start_epoch(epoch)
        ...     loss = method.loss(model(x), y, idx, model=model, inputs=x)   # teachers run on x
        ...     opt.zero_grad(); loss.backward(); opt.step()
        ...     method.end_epoch(model)                                       # snapshots taken here
        >>> method.short_term_teacher is not None and method.long_term_teacher is not None
        True
    """

    name = "lstsd_single"
    extra_forward_passes = 2
    needs_model_inputs = True
    copies_network = True
    teacher_names = ("long_term_teacher", "short_term_teacher")

    def __init__(self, num_samples: int, num_classes: int, generation_epochs: int = 6,
                 lambda_long: float = 2.4, lambda_short: float = 4.0, temperature: float = 2.0,
                 kl_direction: KLDirection = "teacher_student", t2_scale: bool = False,
                 rampup_epochs: int = 0, validate: bool = True) -> None:
        super().__init__(num_samples, num_classes, validate=validate)
        self._set_long_short(generation_epochs, lambda_long, lambda_short, temperature, kl_direction, t2_scale,
                             rampup_epochs)
        self.long_term_teacher: nn.Module | None = None    # θ^L: end of the previous mini-generation
        self.short_term_teacher: nn.Module | None = None   # θ^S: end of the previous epoch

    def teacher_targets(self, inputs: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(softmax(f(x; θ^L)/T), softmax(f(x; θ^S)/T))``; ``None`` for an absent or unused teacher."""
        t = self.distillation.temperature
        long_term = (frozen_probs(self.long_term_teacher, inputs, t)
                     if self.long_term_teacher is not None and self.lambda_long > 0 else None)
        short_term = (frozen_probs(self.short_term_teacher, inputs, t)
                      if self.short_term_teacher is not None and self.lambda_short > 0 else None)
        return long_term, short_term

    def compute_loss(self, epoch: int, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None, *,
                     model: nn.Module | None, inputs: Any) -> tuple[torch.Tensor, LossParts]:
        """Eq. (1) with the two shared snapshots as teachers (CE only in the first mini-generation)."""
        long_term = short_term = None
        if self.generations.index(epoch) > 0:
            long_term, short_term = self.teacher_targets(inputs)
            self._monitor(epoch, logits, targets, (long_term, None), (short_term, None))
        return self._long_short_loss(epoch, logits, targets, (long_term, None), (short_term, None))

    def end_epoch(self, model: nn.Module | None = None) -> None:
        """θ^S ← θ every epoch; θ^L ← θ at the end of a mini-generation."""
        epoch, model = self._closing_epoch(model)
        if self.lambda_short > 0:
            self.refresh_teacher("short_term_teacher", model)
        if self.lambda_long > 0 and self.generations.is_last_epoch(epoch):
            self.refresh_teacher("long_term_teacher", model)
        super().end_epoch(model)

    def hparams(self) -> dict[str, Any]:
        return {**super().hparams(), **self._long_short_hparams()}
