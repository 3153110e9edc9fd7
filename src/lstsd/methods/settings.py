"""The settings the methods share, each validated in one place.

* :func:`check_int`, :func:`check_weight`, :func:`check_fraction`: one-line errors for bad numbers.
* :func:`gaussian_rampup`: Laine & Aila's ramp-up of a distillation weight (Temporal Ensembling,
  and the LSTSD option ``rampup_epochs``).
* :class:`Distillation`: temperature T, KL direction and T² scaling of a distillation term, and the
  two operations every teacher–student method needs: soften logits into targets, and the KL.
* :class:`MiniGenerations`: LSTSD's mini-generations of E epochs (Algorithm 1, the loop over m)
  and the snapshot methods' cycles, which split training the same way.

Example:
    >>> gens = MiniGenerations(6)
    >>> [gens.index(e) for e in (0, 5, 6, 11, 12)], gens.is_last_epoch(5), gens.is_last_epoch(6)
    ([0, 0, 1, 1, 2], True, False)
    >>> Distillation(temperature=2.0).hparams()
    {'temperature': 2.0, 'kl_direction': 'teacher_student', 't2_scale': False}
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..losses import KLDirection, check_kl_direction, check_temperature, distillation_kl


def check_int(name: str, value: Any, minimum: int = 0, *, hint: str = "") -> int:
    """Return ``value`` if it is an int (not a bool) ``>= minimum``; raise ``ValueError`` otherwise.

    Example:
        >>> check_int("cycle_epochs", 40, 1)
        40
        >>> check_int("cycle_epochs", 1.5, 1)
        Traceback (most recent call last):
        ...
        ValueError: cycle_epochs must be an int >= 1, got 1.5
    """
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}{hint}, got {value!r}")
    return value


def check_weight(name: str, value: float) -> float:
    """Return a loss weight as float; raise ``ValueError`` unless it is finite and >= 0."""
    v = float(value)
    if not (v >= 0 and math.isfinite(v)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def check_fraction(name: str, value: float, *, include_one: bool = True) -> float:
    """Return ``value`` as a float in ``[0, 1]`` (``[0, 1)`` unless ``include_one``); raise otherwise."""
    v = float(value)
    if not (0.0 <= v <= 1.0) or (v == 1.0 and not include_one):
        raise ValueError(f"{name} must be in [0, 1{']' if include_one else ')'}, got {value!r}")
    return v


def gaussian_rampup(epoch: int, rampup_epochs: int) -> float:
    """Laine & Aila's ramp-up ``exp(−5·(1 − x)²)`` with ``x = min(epoch / rampup_epochs, 1)``; 1 if disabled.

    Example:
        >>> gaussian_rampup(0, 0), round(gaussian_rampup(40, 80), 4), gaussian_rampup(80, 80)
        (1.0, 0.2865, 1.0)
    """
    if rampup_epochs <= 0:
        return 1.0
    x = min(epoch / rampup_epochs, 1.0)
    return math.exp(-5.0 * (1.0 - x) ** 2)


@dataclass(frozen=True)
class Distillation:
    """How a method distils: temperature T, KL direction and T² scaling (see :func:`lstsd.losses.distillation_kl`).

    The paper (Experimental Setup) softens "the teacher and student signal (in logits)" by T: 2 for
    vision, 1 for NLP. Direction and T² are open in the paper; ``docs/decisions.md`` says why the
    defaults are KL(teacher ‖ student) and no T².

    Example:
        >>> d = Distillation(temperature=2.0)
        >>> logits = torch.tensor([[2.0, 0.0, -1.0]])
        >>> teacher = d.soften(torch.tensor([[1.0, 1.0, 0.0]]))     # what a bank records
        >>> round(d.kl(logits, teacher).item(), 4)
        0.1227
    """

    temperature: float = 2.0
    kl_direction: KLDirection = "teacher_student"
    t2_scale: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "temperature", check_temperature(self.temperature))
        object.__setattr__(self, "kl_direction", check_kl_direction(self.kl_direction))
        object.__setattr__(self, "t2_scale", bool(self.t2_scale))

    def soften(self, logits: torch.Tensor) -> torch.Tensor:
        """``softmax(logits / T)`` in float32, detached: a soft target as a bank or teacher records it."""
        return torch.softmax(logits.detach().float() / self.temperature, dim=1)

    def kl(self, student_logits: torch.Tensor, teacher_probs: torch.Tensor,
           mask: torch.Tensor | None = None) -> torch.Tensor:
        """The distillation term between ``teacher_probs`` (already softened) and the student's logits."""
        return distillation_kl(student_logits, teacher_probs, self.temperature, mask=mask,
                               direction=self.kl_direction, t2_scale=self.t2_scale)

    def hparams(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class MiniGenerations:
    """Training split into mini-generations of ``length`` epochs (0-based epochs and generations).

    LSTSD (Algorithm 1) calls them mini-generations of E epochs; the snapshot methods call them
    cycles. Mini-generation of epoch e is ``e // E``; its last epoch is the one with ``(e + 1) % E == 0``.

    Args:
        length: epochs per mini-generation (E), an int >= 1.
        name: the setting's name in error messages (``generation_epochs``, ``cycle_epochs``).
    """

    length: int
    name: str = "generation_epochs"

    def __post_init__(self) -> None:
        check_int(self.name, self.length, 1)

    def index(self, epoch: int) -> int:
        """0-based mini-generation of ``epoch``: ``epoch // E`` (the paper's m − 1)."""
        return epoch // self.length

    def is_last_epoch(self, epoch: int) -> bool:
        """Whether ``epoch`` closes its mini-generation (Algorithm 1, line 15: e = E)."""
        return (epoch + 1) % self.length == 0
