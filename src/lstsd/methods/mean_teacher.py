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

Choices where the LSTSD paper is open (``docs/decisions.md`` lists all of them):

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

from ..losses import KLDirection, cross_entropy
from ._snapshots import frozen_probs
from .base import LossParts, Method
from .settings import Distillation, check_fraction, check_weight


def ema_teacher(model: nn.Module, ema_decay: float) -> AveragedModel:
    """An EMA copy of ``model`` (weights and buffers), initialised to ``model``'s current values.

    Example:
        >>> model = nn.Linear(2, 1)
        >>> teacher = ema_teacher(model, 0.9)
        >>> with torch.no_grad():
        ...     _ = model.bias.fill_(1.0), teacher.module.bias.fill_(0.0)
        >>> teacher.update_parameters(model)                    # θ' ← 0.9·θ' + 0.1·θ
        >>> round(teacher.module.bias.item(), 4)
        0.1
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
        >>> model = nn.Sequential(nn.Linear(5, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> x, y, idx = torch.randn(16, 5), torch.randint(0, 3, (16,)), torch.arange(16)
        >>> method = MeanTeacher(num_samples=16, num_classes=3)
        >>> method.setup(model)                                  # the EMA teacher starts as a copy
        >>> for epoch in range(2):
        ...     method.start_epoch(epoch)
        ...     loss = method.loss(model(x), y, idx, model=model, inputs=x)
        ...     opt.zero_grad(); loss.backward(); opt.step()
        ...     method.end_step(model)                           # θ' ← αθ' + (1 − α)θ
        ...     method.end_epoch(model)
        >>> sorted(method.eval_predictions(model.eval(), x))
        ['model', 'teacher']
    """

    name = "mean_teacher"
    extra_forward_passes = 1
    needs_model_inputs = True
    copies_network = True

    def __init__(self, num_samples: int, num_classes: int, ema_decay: float = 0.999,
                 lambda_teacher: float = 1.0, temperature: float = 2.0,
                 kl_direction: KLDirection = "teacher_student", t2_scale: bool = False,
                 validate: bool = True) -> None:
        super().__init__(num_samples, num_classes, validate=validate)
        self.ema_decay = check_fraction("ema_decay (α)", ema_decay)
        self.lambda_teacher = check_weight("lambda_teacher", lambda_teacher)
        self.distillation = Distillation(temperature, kl_direction, t2_scale)
        self.teacher: AveragedModel | None = None
        self.steps_per_epoch: int | None = None

    def setup(self, model: nn.Module, *, epochs: int | None = None, steps_per_epoch: int | None = None) -> None:
        """Create the EMA teacher as a copy of ``model`` (call after moving the model to its device)."""
        self.teacher = ema_teacher(model, self.ema_decay)
        self.steps_per_epoch = steps_per_epoch

    def _require_teacher(self, what: str) -> AveragedModel:
        if self.teacher is None:
            raise RuntimeError(f"{what} needs the EMA teacher: call setup(model) first")
        return self.teacher

    def compute_loss(self, epoch: int, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None, *,
                     model: nn.Module | None, inputs: Any) -> tuple[torch.Tensor, LossParts]:
        """``CE + λ·KL(softmax(teacher(x)/T) ‖ softmax(student/T))`` on the batch ``inputs``."""
        teacher = self._require_teacher("loss()")
        ce = cross_entropy(logits, targets)
        z = frozen_probs(teacher.module, inputs, self.distillation.temperature)
        kd = self.distillation.kl(logits, z)
        # An EMA with decay α averages weights 1/(1 − α) steps old on average.
        age = 1 / ((1 - self.ema_decay) * self.steps_per_epoch) if self.steps_per_epoch and self.ema_decay < 1 else None
        self.teacher_monitor.record("ema", z, logits, targets, temperature=self.distillation.temperature, age=age)
        loss = ce + self.lambda_teacher * kd
        return loss, {"ce": (ce, 1.0), "kd": (kd, self.lambda_teacher)}

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
                **self.distillation.hparams()}

    def _prepare_to_load(self, state_dict: dict[str, Any], prefix: str) -> None:
        self._require_teacher("load_state_dict()")
        if not self._submodule_keys(state_dict, prefix, "teacher"):
            raise ValueError("MeanTeacher state_dict is missing 'teacher'")
