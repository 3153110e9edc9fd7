"""Per-sample soft-target storage: the ``z^S`` and ``z^L`` vectors of the paper.

LSTSD (Method section, "Short-Term Teacher" / "Long-Term Teacher") stores, for every training
sample, the probability distribution the network produced when that sample was last used for an
update, "instead of saving θ". :class:`SoftTargetBank` is that store: an ``N × C`` tensor plus a
per-row mask saying whether a row was ever written, so that no sample is ever distilled toward an
uninitialised row.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._checks import check_indices, check_probabilities, check_sizes

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def resolve_bank_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """A bank storage dtype from a ``torch.dtype`` or its name (``"float16"``, as YAML configs give it)."""
    if isinstance(dtype, str):
        if dtype.removeprefix("torch.") not in _DTYPES:
            raise ValueError(f"bank dtype must be one of {sorted(_DTYPES)}, got {dtype!r}")
        return _DTYPES[dtype.removeprefix("torch.")]
    if dtype not in _DTYPES.values():
        raise ValueError(f"dtype must be one of torch.float32, torch.float16, torch.bfloat16, got {dtype}")
    return dtype


class SoftTargetBank(nn.Module):
    """An ``num_samples × num_classes`` store of soft targets with a per-row "recorded" mask.

    Targets are stored in ``dtype`` (fp16 by default: 50,000 × 100 CIFAR-100 targets take 10 MB)
    and returned as float32. Rows never written are reported as not recorded by :meth:`read`.

    The store is an ``nn.Module`` whose two tensors are registered buffers (as timm's EMA models
    hold theirs), so ``.to(device)``, ``state_dict()`` and ``load_state_dict()`` are PyTorch's own;
    loading refuses a bank of another N, C or dtype with a message that says so.

    Args:
        num_samples: number of training samples N (rows).
        num_classes: number of classes C (columns).
        dtype: storage dtype, one of ``torch.float32``, ``torch.float16``, ``torch.bfloat16`` (or its name).
        device: where the store lives; keep it on the model's device.
        validate: check every write/read (index range, repeats, shapes, finiteness, row sums).
            Each check costs one host synchronisation on CUDA; callers that produce indices and
            probabilities themselves (the methods in this package) validate once and may turn
            this off.

    Example:
        >>> bank = SoftTargetBank(num_samples=4, num_classes=3)
        >>> bank.write(torch.tensor([2, 0]), torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]]))
        >>> targets, recorded = bank.read(torch.tensor([0, 1]))
        >>> recorded.tolist()
        [True, False]
        >>> sorted(bank.state_dict())
        ['recorded', 'targets']
    """

    targets: torch.Tensor
    recorded: torch.Tensor

    def __init__(self, num_samples: int, num_classes: int, dtype: torch.dtype | str = torch.float16,
                 device: torch.device | str | None = None, *, validate: bool = True) -> None:
        super().__init__()
        check_sizes(num_samples, num_classes)
        self.num_samples = num_samples
        self.num_classes = num_classes
        self.validate = validate
        self.register_buffer("targets", torch.zeros(num_samples, num_classes, dtype=resolve_bank_dtype(dtype),
                                                    device=device))
        self.register_buffer("recorded", torch.zeros(num_samples, dtype=torch.bool, device=device))

    @property
    def dtype(self) -> torch.dtype:
        return self.targets.dtype

    @property
    def device(self) -> torch.device:
        return self.targets.device

    def write(self, indices: torch.Tensor, probs: torch.Tensor) -> None:
        """Record ``probs[k]`` as the soft target of sample ``indices[k]`` (overwriting it).

        Raises:
            ValueError: (when ``validate``) indices not a 1-D integer tensor, out of
                ``[0, num_samples)`` or repeated; ``probs`` not ``len(indices) × num_classes``,
                not finite, or rows not summing to 1.
        """
        if self.validate:
            indices = check_indices(indices, self.num_samples)
            check_probabilities(probs, indices.numel(), self.num_classes)
        indices = indices.to(self.device)
        self.targets[indices] = probs.detach().to(device=self.device, dtype=self.dtype)
        self.recorded[indices] = True

    def read(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(targets, recorded)`` for ``indices``: float32 ``B × C`` and bool ``B``.

        Rows that were never written come back as zeros with ``recorded`` False.
        """
        if self.validate:
            indices = check_indices(indices, self.num_samples, allow_repeats=True)
        indices = indices.to(self.device)
        return self.targets[indices].float(), self.recorded[indices]

    def reset(self) -> None:
        """Forget every recorded target."""
        self.targets.zero_()
        self.recorded.zero_()

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Checked before PyTorch copies anything: its own errors would say "size mismatch" (or, for
        # another dtype, nothing at all: copy_ converts silently).
        targets, recorded = state_dict.get(prefix + "targets"), state_dict.get(prefix + "recorded")
        if isinstance(targets, torch.Tensor) and isinstance(recorded, torch.Tensor):
            saved = {"num_samples": targets.shape[0], "num_classes": targets.shape[1] if targets.dim() == 2 else None,
                     "dtype": _dtype_name(targets.dtype)}
            mine = {"num_samples": self.num_samples, "num_classes": self.num_classes, "dtype": _dtype_name(self.dtype)}
            for what in mine:
                if saved[what] != mine[what]:
                    raise ValueError(
                        f"cannot load a soft-target bank saved with {what}={saved[what]} into one with "
                        f"{what}={mine[what]}: the checkpoint comes from a run with another training set, "
                        "class count or bank dtype")
            if targets.dim() != 2 or tuple(recorded.shape) != (self.num_samples,) or recorded.dtype != torch.bool:
                raise ValueError("corrupt soft-target bank state: 'targets' must be N × C and 'recorded' a bool N")
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        return (f"num_samples={self.num_samples}, num_classes={self.num_classes}, "
                f"dtype={self.dtype}, device={self.device}")
