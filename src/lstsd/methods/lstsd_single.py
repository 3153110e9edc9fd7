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
from ._snapshots import frozen_probs, refresh_snapshot, require_inputs, restore_snapshot, snapshot_state
from .base import Method
from .lstsd import long_short_hparams, lstsd_loss, set_long_short_settings


class LSTSDSingle(Method):
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
        validate: check every batch.

    Example:
        >>> policy = LSTSDSingle(num_samples=len(train_set), num_classes=100)
        >>> policy.setup(model)
        >>> for epoch in range(epochs):
        ...     policy.start_epoch(epoch)
        ...     for x, y, idx in loader:
        ...         loss = policy.loss(model(x), y, idx, model=model, inputs=x)
        ...         opt.zero_grad(); loss.backward(); opt.step()
        ...     policy.end_epoch(model)
    """

    name = "lstsd_single"
    extra_forward_passes = 2
    needs_model_inputs = True

    def __init__(self, num_samples: int, num_classes: int, generation_epochs: int = 6,
                 lambda_long: float = 2.4, lambda_short: float = 4.0, temperature: float = 2.0,
                 kl_direction: KLDirection = "teacher_student", t2_scale: bool = False,
                 validate: bool = True) -> None:
        super().__init__(num_samples, num_classes, validate=validate)
        set_long_short_settings(self, generation_epochs, lambda_long, lambda_short, temperature, kl_direction,
                                t2_scale)
        self.long_term_teacher: nn.Module | None = None    # θ^L: end of the previous mini-generation
        self.short_term_teacher: nn.Module | None = None   # θ^S: end of the previous epoch
        self._model: nn.Module | None = None

    def setup(self, model: nn.Module, *, epochs: int | None = None, steps_per_epoch: int | None = None) -> None:
        self._model = model

    def mini_generation(self, epoch: int) -> int:
        """0-based mini-generation of ``epoch``: ``epoch // E``."""
        return epoch // self.generation_epochs

    def is_last_epoch_of_mini_generation(self, epoch: int) -> bool:
        return (epoch + 1) % self.generation_epochs == 0

    def teacher_targets(self, inputs: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``(softmax(f(x; θ^L)/T), softmax(f(x; θ^S)/T))``; ``None`` for an absent or unused teacher."""
        long_term = (frozen_probs(self.long_term_teacher, inputs, self.temperature)
                     if self.long_term_teacher is not None and self.lambda_long > 0 else None)
        short_term = (frozen_probs(self.short_term_teacher, inputs, self.temperature)
                      if self.short_term_teacher is not None and self.lambda_short > 0 else None)
        return long_term, short_term

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None = None, *,
             model: nn.Module | None = None, inputs: Any = None) -> torch.Tensor:
        """Eq. (1) with the two shared snapshots as teachers (CE only in the first mini-generation)."""
        epoch = self._require_epoch("loss()")
        self._check_batch(logits, targets, indices)
        long_term = short_term = None
        if self.mini_generation(epoch) > 0:
            require_inputs(self, inputs)
            long_term, short_term = self.teacher_targets(inputs)
        loss, parts = lstsd_loss(logits, targets, long_term_targets=long_term, short_term_targets=short_term,
                                 lambda_long=self.lambda_long, lambda_short=self.lambda_short,
                                 temperature=self.temperature, kl_direction=self.kl_direction,
                                 t2_scale=self.t2_scale)
        parts["total"] = loss.detach()
        self._components = parts
        return loss

    def end_epoch(self, model: nn.Module | None = None) -> None:
        """θ^S ← θ every epoch; θ^L ← θ at the end of a mini-generation."""
        epoch = self._require_epoch("end_epoch()")
        if model is None:
            raise ValueError("LSTSDSingle.end_epoch needs the network: call end_epoch(model)")
        if self.lambda_short > 0:
            self.short_term_teacher = refresh_snapshot(self.short_term_teacher, model)
        if self.lambda_long > 0 and self.is_last_epoch_of_mini_generation(epoch):
            self.long_term_teacher = refresh_snapshot(self.long_term_teacher, model)
        super().end_epoch(model)

    def hparams(self) -> dict[str, Any]:
        return {**super().hparams(), **long_short_hparams(self)}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["long_term_teacher"] = snapshot_state(self.long_term_teacher)
        state["short_term_teacher"] = snapshot_state(self.short_term_teacher)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "long_term_teacher" not in state or "short_term_teacher" not in state:
            raise ValueError("LSTSDSingle state_dict is missing 'long_term_teacher' or 'short_term_teacher'")
        self.long_term_teacher = restore_snapshot(self._model, state["long_term_teacher"],
                                                  into=self.long_term_teacher)
        self.short_term_teacher = restore_snapshot(self._model, state["short_term_teacher"],
                                                   into=self.short_term_teacher)
