"""Distillation losses.

The LSTSD paper (Method, Eq. 1) distils with ``1/|B| Σ_i KL[f(x_i; θ) ‖ z_i]`` and, following
Hinton et al. (2015), divides "the teacher and student signal (in logits)" by a temperature T
(Experimental Setup). Our choices where the paper is open (``docs/decisions.md`` gives the reasons):

* direction: KL(teacher ‖ student) = Σ z·(log z − log p), as every public KD implementation
  computes it; the paper's literal notation KL(student ‖ teacher) is ``direction="student_teacher"``;
* reduction: sum over classes, divided by the batch size (masked rows count in |B| but add 0);
* no T² factor unless ``t2_scale=True`` (the paper's λ values are the weights).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from ._checks import check_logits

KLDirection = Literal["teacher_student", "student_teacher"]
KL_DIRECTIONS: tuple[str, ...] = ("teacher_student", "student_teacher")

# In the literal direction the teacher's log-probability appears with the student's weight, so a
# teacher probability that underflowed to 0 in an fp16 bank would give an infinite loss.
_TEACHER_FLOOR = 1e-8


def check_temperature(temperature: float) -> float:
    """Return ``temperature`` as a float, or raise ``ValueError`` if it is not positive and finite."""
    t = float(temperature)
    if not (t > 0 and t < float("inf")):
        raise ValueError(f"temperature must be a positive finite number, got {temperature!r}")
    return t


def check_kl_direction(direction: str) -> str:
    """Return ``direction`` if it is one of :data:`KL_DIRECTIONS`, or raise ``ValueError``."""
    if direction not in KL_DIRECTIONS:
        raise ValueError(f"direction must be one of {KL_DIRECTIONS}, got {direction!r}")
    return direction


def distillation_kl(student_logits: torch.Tensor, teacher_probs: torch.Tensor, temperature: float = 1.0,
                    mask: torch.Tensor | None = None, direction: KLDirection = "teacher_student",
                    t2_scale: bool = False) -> torch.Tensor:
    """KL divergence between a teacher's soft targets and the student, both softened by ``temperature``.

    ``teacher_probs`` are probabilities *already* computed at temperature T (the banks store
    ``softmax(logits / T)``); the student is softened here as ``log_softmax(student_logits / T)``.
    The teacher is detached: gradients reach only the student.

    Args:
        student_logits: ``B × C`` raw logits of the network being trained.
        teacher_probs: ``B × C`` teacher probabilities at temperature T.
        temperature: T > 0.
        mask: optional bool ``B`` tensor; rows where it is False contribute 0 (but still count in
            the batch size ``B`` that the sum is divided by, as in the paper's ``1/|B| Σ``).
        direction: ``"teacher_student"`` (default) for KL(z ‖ p) = Σ z·(log z − log p);
            ``"student_teacher"`` for the paper's literal KL(p ‖ z) = Σ p·(log p − log z), with the
            teacher floored at 1e-8 so that rows that underflowed in a half-precision bank stay finite.
        t2_scale: multiply by T² (Hinton et al.) to keep gradient magnitudes independent of T.

    Returns:
        A scalar float32 tensor.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0, -1.0]])
        >>> teacher = torch.softmax(torch.tensor([[1.0, 1.0, 0.0]]) / 2.0, dim=1)
        >>> loss = distillation_kl(logits, teacher, temperature=2.0)
    """
    check_logits(student_logits, name="student_logits")
    if not isinstance(teacher_probs, torch.Tensor) or teacher_probs.shape != student_logits.shape:
        raise ValueError(f"teacher_probs must have the shape of student_logits {tuple(student_logits.shape)}, got "
                         f"{tuple(getattr(teacher_probs, 'shape', ()))}")
    t = check_temperature(temperature)
    check_kl_direction(direction)
    batch_size = student_logits.shape[0]
    if batch_size == 0:
        return student_logits.sum() * 0.0

    log_p = F.log_softmax(student_logits.float() / t, dim=1)
    z = teacher_probs.detach().float()
    if direction == "teacher_student":
        per_sample = (torch.xlogy(z, z) - z * log_p).sum(dim=1)
    else:
        per_sample = (log_p.exp() * (log_p - z.clamp_min(_TEACHER_FLOOR).log())).sum(dim=1)

    if mask is not None:
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != (batch_size,):
            raise ValueError(f"mask must be a bool tensor of shape ({batch_size},), got "
                             f"{getattr(mask, 'dtype', type(mask).__name__)} {tuple(getattr(mask, 'shape', ()))}")
        per_sample = torch.where(mask, per_sample, torch.zeros_like(per_sample))
    loss = per_sample.sum() / batch_size
    return loss * (t * t) if t2_scale else loss


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy against class indices at T = 1 (the paper's L^C), in float32 whatever the
    autocast dtype.

    Example:
        >>> round(cross_entropy(torch.tensor([[2.0, 0.0]]), torch.tensor([0])).item(), 4)
        0.1269
    """
    return F.cross_entropy(logits.float(), targets)


def soft_cross_entropy(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a soft target distribution, ``-1/|B| Σ_i Σ_c q_ic log p_ic``.

    Used by label smoothing and PS-KD, whose targets mix the one-hot label with a soft distribution.
    """
    check_logits(logits)
    if not isinstance(target_probs, torch.Tensor) or target_probs.shape != logits.shape:
        raise ValueError(f"target_probs must have the shape of logits {tuple(logits.shape)}, got "
                         f"{tuple(getattr(target_probs, 'shape', ()))}")
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    log_p = F.log_softmax(logits.float(), dim=1)
    return -(target_probs.detach().float() * log_p).sum() / logits.shape[0]
