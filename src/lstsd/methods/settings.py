"""The settings the methods share, each validated in one place.

* :func:`check_int`, :func:`check_weight`, :func:`check_fraction`: one-line errors for bad numbers.
* :func:`gaussian_rampup`: Laine & Aila's ramp-up of a distillation weight (Temporal Ensembling,
  and the LSTSD option ``rampup_epochs``).
* :class:`Distillation`: temperature T, KL direction and T² scaling of a distillation term, and the
  two operations every teacher–student method needs: soften logits into targets, and the KL.
* :class:`MiniGenerations`: LSTSD's mini-generations of E epochs (Algorithm 1, the loop over m)
  and the snapshot methods' cycles, which split training the same way.
* :class:`BankSettings`: the format, size, dtype and place of a method's soft-target banks, per
  sample (dense or top-k over C classes) or per token (top-k or sampled over a vocabulary).

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

from ..bank import Bank, check_bank_settings, make_bank, resolve_bank_dtype
from ..losses import KLDirection, check_kl_direction, check_temperature
from ..sparse import SparseTargets, kl_against
from ..tokens import TOKEN_FORMATS, TokenBank


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

    def kl(self, student_logits: torch.Tensor, teacher_probs: torch.Tensor | SparseTargets,
           mask: torch.Tensor | None = None) -> torch.Tensor:
        """The distillation term between ``teacher_probs`` (already softened; dense, or sparse per-token
        targets) and the student's logits."""
        return kl_against(student_logits, teacher_probs, self.temperature, mask=mask,
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


# Per-token banks: defaults of their size (Anshumann et al. find a dozen sampled tokens enough).
DEFAULT_TOKEN_TOPK, DEFAULT_TOKEN_SAMPLES = 8, 16


class BankSettings:
    """The bank settings a method takes, validated once; :meth:`make` builds banks of them.

    Args:
        bank_format: per sample ``"dense"`` (the default) or ``"topk"``; per token ``"sampled"`` (the
            default, ``"topk"`` when ``bank_topk`` is given) or ``"topk"`` (:mod:`lstsd.tokens`).
            ``None`` takes the default. Per token, top-k spreads the leftover mass uniformly over
            the vocabulary, which a small LM's teacher leaves large (half its mass on average in
            ``docs/results.md``'s ``lm-quick`` run): a strong pull toward the uniform distribution.
            The sampled format is an unbiased estimate of the teacher.
        bank_topk: k of the top-k format (per token: default 8, or the vocabulary size if smaller).
        bank_dtype: storage dtype of the probabilities.
        bank_device: ``None`` (per sample: beside the model; per token: host memory) or ``"cpu"``
            (pinned host memory, only a batch's rows copied to the model's device).
        bank_samples: draws per token of the sampled format (default 16, or the vocabulary size if
            smaller).
        per_token: one target per supervised token of each example (causal LMs) instead of one per sample.

    Example:
        >>> settings = BankSettings("topk", 5, "float16")
        >>> settings.hparams()
        {'bank_dtype': 'float16', 'bank_format': 'topk', 'bank_topk': 5}
        >>> settings.make(1000, 100)
        TopKBank(num_samples=1000, num_classes=100, device=cpu, k=5, dtype=torch.float16)
        >>> BankSettings(per_token=True).hparams()
        {'bank_dtype': 'float16', 'bank_format': 'sampled', 'bank_topk': None, 'bank_samples': 16, 'per_token': True}
        >>> BankSettings(bank_topk=8, per_token=True).format
        'topk'
    """

    def __init__(self, bank_format: str | None = None, bank_topk: int | None = None,
                 bank_dtype: torch.dtype | str = torch.float16, bank_device: str | None = None, *,
                 bank_samples: int | None = None, per_token: bool = False) -> None:
        if not isinstance(per_token, bool):
            raise ValueError(f"per_token must be True or False, got {per_token!r}")
        self.per_token = per_token
        self._default_size = False   # per token, bank_topk / bank_samples left to their default
        self.dtype = resolve_bank_dtype(bank_dtype)
        if per_token:
            bank_format = bank_format or ("topk" if bank_topk is not None else "sampled")
            if bank_format not in TOKEN_FORMATS:
                raise ValueError(f"per-token banks take bank_format in {TOKEN_FORMATS}, got {bank_format!r}: a dense "
                                 "row over a vocabulary does not fit")
            # Defaults fit any vocabulary: make() lowers them to a smaller one's size.
            self._default_size = (bank_topk if bank_format == "topk" else bank_samples) is None
            if bank_format == "topk":
                bank_topk = DEFAULT_TOKEN_TOPK if bank_topk is None else bank_topk
                check_int("bank_topk", bank_topk, 1)
            elif bank_topk is not None:
                raise ValueError("bank_topk is for bank_format='topk'; the sampled format takes bank_samples")
            if bank_format == "sampled":
                bank_samples = DEFAULT_TOKEN_SAMPLES if bank_samples is None else bank_samples
                check_int("bank_samples", bank_samples, 1)
            if bank_device not in (None, "cpu"):
                raise ValueError(f"bank_device must be None or 'cpu' (per-token banks live in host memory), got "
                                 f"{bank_device!r}")
        else:
            bank_format = bank_format or "dense"
            if bank_format == "sampled":
                raise ValueError("bank_format='sampled' is for per-token banks (per_token=True); per sample use "
                                 "'dense' or 'topk'")
            check_bank_settings(bank_format, bank_topk, bank_device)
        if bank_samples is not None and bank_format != "sampled":
            raise ValueError("bank_samples is for bank_format='sampled' (per_token=True)")
        self.format, self.topk, self.samples, self.place = bank_format, bank_topk, bank_samples, bank_device

    def make(self, num_samples: int, num_classes: int, *,
             device: torch.device | str | None = None) -> Bank | TokenBank:
        """A bank for ``num_samples`` samples (examples) over ``num_classes`` classes (tokens); per
        sample beside ``device`` unless ``bank_device="cpu"``, per token in host memory."""
        if self.per_token:
            if self._default_size and self.format == "topk":
                self.topk = min(DEFAULT_TOKEN_TOPK, num_classes)
            elif self._default_size:
                self.samples = min(DEFAULT_TOKEN_SAMPLES, num_classes)
            k = self.topk if self.format == "topk" else self.samples
            assert k is not None   # set in __init__
            return TokenBank(num_samples, num_classes, bank_format=self.format, k=k, dtype=self.dtype,
                             cpu_resident=True)
        return make_bank(num_samples, num_classes, bank_format=self.format, bank_topk=self.topk, dtype=self.dtype,
                         bank_device=self.place, device=None if self.place == "cpu" else device, validate=False)

    def hparams(self) -> dict[str, Any]:
        """The settings a checkpoint must agree on (the bank's place is not one: it may change on resume);
        per-token banks add ``per_token`` (and ``bank_samples`` for the sampled format)."""
        out: dict[str, Any] = {"bank_dtype": str(self.dtype).removeprefix("torch."), "bank_format": self.format,
                               "bank_topk": self.topk}
        if self.samples is not None:
            out["bank_samples"] = self.samples
        if self.per_token:
            out["per_token"] = True
        return out
