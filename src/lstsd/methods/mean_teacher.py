"""Mean Teacher (Tarvainen & Valpola, "Mean teachers are better role models: Weight-averaged
consistency targets improve semi-supervised deep learning results", NeurIPS 2017), as the LSTSD
paper uses it: a one-generation, fully supervised teacher–student baseline.

The LSTSD paper, "Baselines":

    The **Mean Teacher** approach generates the teacher model by calculating the moving weighted
    average parameters over all training steps, aiming to produce a more accurate teacher model
    than using the final weights directly and allowing the model to learn from all snapshots in
    previous training steps. Specifically, the parameters in the teacher model are computed as
    θ'_{t+1} = α θ'_t + (1 − α) θ_t at the t-th iteration. As suggested by the original paper,
    we set α = 0.999.

Mapping onto this file::

    setup(model)        θ'_0 = θ_0                           AveragedModel + one update (a copy)
    loss(...)           z = softmax(f(x; θ') / T)            teacher forward on the same batch
                        L = CE(f(x; θ), y) + λ·KL(z ‖ softmax(f(x; θ) / T))
    end_step(model)     θ' ← α·θ' + (1 − α)·θ                after every optimizer step

Choices where the LSTSD paper is open (see DESIGN.md):

* The teacher is ``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn(α)`` and
  ``use_buffers=True``: batch-norm running statistics are averaged like the weights. (The integer
  ``num_batches_tracked`` counter is "averaged" with truncation, as torch does; it only matters to
  batch norm with ``momentum=None``.) α is fixed; the original paper's warm-up
  ``α_t = min(1 − 1/(t+1), α)`` is not used, following the LSTSD paper's description.
* The teacher runs in eval mode without gradient (its averaged batch-norm statistics, no
  dropout), so its prediction for a sample does not depend on the rest of the batch. The original
  Mean Teacher runs both networks with independent input/dropout noise because its goal is a
  consistency cost on unlabelled data; here the teacher is a source of soft targets.
* The consistency cost is the distillation KL with temperature T (as for every baseline of the
  LSTSD paper), not the original squared error between softmaxes; its weight ``lambda_teacher``
  defaults to 1.0 — the LSTSD paper grid-searched the teacher-loss weight of every baseline and
  does not report the value.
* The student (the network being trained) is the headline predictor; the EMA teacher's
  predictions are reported beside it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..losses import KLDirection, check_kl_direction, check_temperature, distillation_kl
from ._snapshots import frozen_probs, require_inputs, snapshot_state
from .base import Method, check_weight


def ema_teacher(model: nn.Module, ema_decay: float) -> AveragedModel:
    """An EMA copy of ``model`` (weights and buffers), initialised to ``model``'s current values.

    Example:
        >>> teacher = ema_teacher(model, 0.999)
        >>> ...; opt.step(); teacher.update_parameters(model)   # θ' ← 0.999·θ' + 0.001·θ
    """
    teacher = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
    teacher.update_parameters(model)   # n_averaged 0 -> 1: θ'_0 = θ_0 (a copy); EMA from then on
    teacher.requires_grad_(False)
    teacher.eval()
    return teacher


class MeanTeacher(Method):
    """Mean Teacher: distil from an exponential moving average of the network's weights.

    Args:
        num_samples: training-set size N.
        num_classes: number of classes C.
        ema_decay: α of θ' ← αθ' + (1 − α)θ, applied after every optimizer step (paper: 0.999).
        lambda_teacher: weight of the distillation term (default 1.0; the LSTSD paper tuned it
            by grid search without reporting it).
        temperature: T softening teacher and student in the distillation term (paper: 2).
        kl_direction: ``"teacher_student"`` (default) or ``"student_teacher"``; see
            :func:`lstsd.losses.distillation_kl`.
        t2_scale: multiply the distillation term by T².
        validate: check every batch.

    Example:
        >>> policy = MeanTeacher(num_samples=len(train_set), num_classes=100)
        >>> policy.setup(model)
        >>> for epoch in range(epochs):
        ...     policy.start_epoch(epoch)
        ...     for x, y, idx in loader:
        ...         loss = policy.loss(model(x), y, idx, model=model, inputs=x)
        ...         opt.zero_grad(); loss.backward(); opt.step()
        ...         policy.end_step(model)
        ...     policy.end_epoch(model)
    """

    name = "mean_teacher"
    extra_forward_passes = 1
    needs_model_inputs = True

    def __init__(self, num_samples: int, num_classes: int, ema_decay: float = 0.999,
                 lambda_teacher: float = 1.0, temperature: float = 2.0,
                 kl_direction: KLDirection = "teacher_student", t2_scale: bool = False,
                 validate: bool = True) -> None:
        super().__init__(num_samples, num_classes, validate=validate)
        decay = float(ema_decay)
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"ema_decay (α) must be in [0, 1], got {ema_decay!r}")
        self.ema_decay = decay
        self.lambda_teacher = check_weight("lambda_teacher", lambda_teacher)
        self.temperature = check_temperature(temperature)
        self.kl_direction = check_kl_direction(kl_direction)
        self.t2_scale = bool(t2_scale)
        self.teacher: AveragedModel | None = None

    def setup(self, model: nn.Module, *, epochs: int | None = None, steps_per_epoch: int | None = None) -> None:
        """Create the EMA teacher as a copy of ``model`` (call after moving the model to its device)."""
        self.teacher = ema_teacher(model, self.ema_decay)

    def _require_teacher(self, what: str) -> AveragedModel:
        if self.teacher is None:
            raise RuntimeError(f"{what} needs the EMA teacher: call setup(model) first")
        return self.teacher

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None = None, *,
             model: nn.Module | None = None, inputs: Any = None) -> torch.Tensor:
        """``CE + λ·KL(softmax(teacher(x)/T) ‖ softmax(student/T))`` on the batch ``inputs``."""
        self._require_epoch("loss()")
        self._check_batch(logits, targets, indices)
        teacher = self._require_teacher("loss()")
        require_inputs(self, inputs)
        ce = self.cross_entropy(logits, targets)
        z = frozen_probs(teacher.module, inputs, self.temperature)
        kd = distillation_kl(logits, z, self.temperature, direction=self.kl_direction, t2_scale=self.t2_scale)
        loss = ce + self.lambda_teacher * kd
        self._components = {"ce": ce.detach(), "kd": kd.detach(), "total": loss.detach()}
        return loss

    def end_step(self, model: nn.Module) -> None:
        """θ' ← α·θ' + (1 − α)·θ (parameters and buffers)."""
        self._require_teacher("end_step()").update_parameters(model)

    @torch.no_grad()
    def eval_predictions(self, model: nn.Module, inputs: Any) -> dict[str, torch.Tensor]:
        """``{"model": the student's probabilities, "teacher": the EMA teacher's}``."""
        out = {"model": torch.softmax(model(inputs).float(), dim=1)}
        if self.teacher is not None:
            out["teacher"] = frozen_probs(self.teacher.module, inputs)
        return out

    def hparams(self) -> dict[str, Any]:
        return {**super().hparams(), "ema_decay": self.ema_decay, "lambda_teacher": self.lambda_teacher,
                "temperature": self.temperature, "kl_direction": self.kl_direction, "t2_scale": self.t2_scale}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["teacher"] = snapshot_state(self._require_teacher("state_dict()"))
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        teacher = self._require_teacher("load_state_dict()")
        super().load_state_dict(state)
        if state.get("teacher") is None:
            raise ValueError("MeanTeacher state_dict is missing 'teacher'")
        teacher.load_state_dict(state["teacher"])
