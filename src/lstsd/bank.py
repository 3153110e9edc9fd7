"""Per-sample soft-target storage: the ``z^S`` and ``z^L`` vectors of the paper.

LSTSD (Method section, "Short-Term Teacher" / "Long-Term Teacher") stores, for every training
sample, the probability distribution the network produced when that sample was last used for an
update, "instead of saving θ". A bank is that store plus a per-row mask saying whether a row was
ever written, so that no sample is ever distilled toward an uninitialised row. Two formats:

* :class:`SoftTargetBank` (``bank_format="dense"``): the ``N × C`` probabilities (fp16 by default);
* :class:`TopKBank` (``bank_format="topk"``): the k largest probabilities and their class ids; the
  leftover mass is spread uniformly over the other ``C − k`` classes when a row is read, so a
  target is still a distribution and the KL stays finite in both directions (with k = C it is the
  dense bank). For class counts where a dense bank does not fit (ImageNet-1k: 2.56 GB per fp16 bank).

Either can stay in host memory while the model is on an accelerator (``cpu_resident=True``: pinned
memory, the batch's rows copied without blocking). Every bank is an ``nn.Module`` whose tensors
are registered buffers. :func:`make_bank` builds one from the names a config uses.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._checks import check_indices, check_probabilities, check_sizes

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
BANK_FORMATS = ("dense", "topk")


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


class Bank(nn.Module):
    """What every bank format shares: the "recorded" mask, validation, reads and writes of rows in
    the format's storage form, host residency, and a clear refusal of a checkpoint of another shape.

    A format defines its row buffers (``row_buffers``, registered in ``__init__``), :meth:`encode`
    (probabilities → rows in storage form) and :meth:`decode` (rows → float32 probabilities).
    :meth:`store` writes rows that are already encoded: under ``torch.distributed`` the methods
    gather the encoded rows of every rank and store them (see :mod:`lstsd.distributed`).
    """

    row_buffers: tuple[str, ...] = ()
    # Whether decoding an unwritten (all-zero) row gives something other than zeros, so that
    # :meth:`read` must zero it (a top-k row spreads its "leftover" mass); dense rows need not.
    zero_unrecorded_rows = False
    recorded: torch.Tensor

    def __init__(self, num_samples: int, num_classes: int, *, device: torch.device | str | None = None,
                 validate: bool = True, cpu_resident: bool = False) -> None:
        super().__init__()
        check_sizes(num_samples, num_classes)
        self.num_samples = num_samples
        self.num_classes = num_classes
        self.validate = validate
        self.cpu_resident = bool(cpu_resident)
        if self.cpu_resident and device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"a CPU-resident bank lives in host memory; got device={device!r} "
                             "(drop device=, or cpu_resident=False to keep the bank on the accelerator)")
        self._storage_device = torch.device("cpu") if self.cpu_resident else device
        self.register_buffer("recorded", self._zeros(num_samples, dtype=torch.bool))

    def _zeros(self, *shape: int, dtype: torch.dtype) -> torch.Tensor:
        # Pinned host memory makes the copies of a batch's rows to the accelerator asynchronous;
        # pinning needs an accelerator runtime, so a CPU-only machine gets ordinary memory.
        pin = self.cpu_resident and torch.cuda.is_available()
        return torch.zeros(*shape, dtype=dtype, device=self._storage_device, pin_memory=pin)

    @property
    def device(self) -> torch.device:
        return self.recorded.device

    # ------------------------------------------------------------------ format
    def encode(self, probs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Probability rows (``B × C``) → this format's storage rows."""
        raise NotImplementedError

    def decode(self, *rows: torch.Tensor) -> torch.Tensor:
        """Storage rows → float32 ``B × C`` probabilities."""
        raise NotImplementedError

    def encode_logits(self, logits: torch.Tensor, temperature: float) -> tuple[torch.Tensor, ...]:
        """:meth:`encode` of ``softmax(logits / T)``: what a method records from its logits."""
        return self.encode(torch.softmax(logits.detach().float() / temperature, dim=1))

    # ------------------------------------------------------------------ rows
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
        self.store(indices, *self.encode(probs.detach()))

    def store(self, indices: torch.Tensor, *rows: torch.Tensor, finite: torch.Tensor | None = None) -> None:
        """Write rows already in storage form (from :meth:`encode`); indices must be unique.

        A row holding NaN or inf is not written (the sample keeps its previous target and
        "recorded" flag): nothing non-finite ever reaches a bank. This guard runs on the device,
        without a host synchronisation; the methods' ``validate`` raises on such logits instead.
        ``finite`` (bool per row), when the caller computed it already, saves computing it again.
        """
        idx = indices.to(self.device)
        buffers = [getattr(self, name) for name in self.row_buffers]
        rows = tuple(row.to(device=b.device, dtype=b.dtype) for row, b in zip(rows, buffers))
        finite = (finite_rows(*rows) if finite is None else finite).to(self.device)
        for buffer, row in zip(buffers, rows):
            keep = finite.view(-1, *([1] * (row.dim() - 1)))
            buffer[idx] = torch.where(keep, row, buffer[idx])
        self.recorded[idx] = self.recorded[idx] | finite

    def read(self, indices: torch.Tensor,
             device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(targets, recorded)`` for ``indices``: float32 ``B × C`` and bool ``B``, on
        ``device`` (default: the indices' device; a CPU-resident bank copies the rows there).

        Rows that were never written come back as zeros with ``recorded`` False.
        """
        if self.validate:
            indices = check_indices(indices, self.num_samples, allow_repeats=True)
        out = indices.device if device is None else torch.device(device)
        idx = indices.to(self.device)
        rows = [self._to(getattr(self, name), idx, out) for name in self.row_buffers]
        recorded = self._to(self.recorded, idx, out)
        targets = self.decode(*rows)
        return (targets.masked_fill_(~recorded[:, None], 0.0) if self.zero_unrecorded_rows else targets), recorded

    def _to(self, buffer: torch.Tensor, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
        if buffer.device == device:
            return buffer[idx]
        if buffer.is_pinned():   # gather into pinned memory, then copy without blocking the host
            staged = torch.empty((idx.numel(), *buffer.shape[1:]), dtype=buffer.dtype, pin_memory=True)
            return torch.index_select(buffer, 0, idx, out=staged).to(device, non_blocking=True)
        return buffer[idx].to(device)

    def nbytes_per_sample(self) -> int:
        """Bytes of storage per training sample (all row buffers and the mask)."""
        return sum(getattr(self, n)[0].numel() * getattr(self, n).element_size()
                   for n in (*self.row_buffers, "recorded"))

    # ------------------------------------------------------------------ nn.Module plumbing
    def _apply(self, fn: Any, recurse: bool = True) -> Bank:
        # A CPU-resident bank stays in host memory when its method (or a user's module holding it)
        # is moved to an accelerator: that is its purpose.
        return self if self.cpu_resident else super()._apply(fn, recurse)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Checked before PyTorch copies anything: its own errors would say "size mismatch" (or, for
        # another dtype, nothing at all: copy_ converts silently).
        for name in (*self.row_buffers, "recorded"):
            saved, mine = state_dict.get(prefix + name), getattr(self, name)
            if isinstance(saved, torch.Tensor) and (saved.shape != mine.shape or saved.dtype != mine.dtype):
                raise ValueError(f"cannot load a soft-target bank whose {name!r} was saved with "
                                 f"{self._describe(saved)} into one with {self._describe(mine)}: the "
                                 "checkpoint comes from a run with another training set, class count, "
                                 "bank format, top-k or bank dtype")
        super()._load_from_state_dict(state_dict, prefix, *args)

    @staticmethod
    def _describe(t: torch.Tensor) -> str:
        shape = tuple(t.shape)
        parts = [f"num_samples={shape[0]}" if shape else "no rows"]
        if len(shape) > 1:
            parts.append(f"{shape[1]} columns (num_classes or top-k)")
        return ", ".join(parts + [f"dtype={_dtype_name(t.dtype)}"])

    def extra_repr(self) -> str:
        return (f"num_samples={self.num_samples}, num_classes={self.num_classes}, device={self.device}"
                + (", cpu_resident=True" if self.cpu_resident else ""))


class SoftTargetBank(Bank):
    """A dense ``num_samples × num_classes`` store of soft targets with a per-row "recorded" mask.

    Targets are stored in ``dtype`` (fp16 by default: 50,000 × 100 CIFAR-100 targets take 10 MB)
    and returned as float32. Rows never written are reported as not recorded by :meth:`read`.

    The store is an ``nn.Module`` whose tensors are registered buffers (as timm's EMA models hold
    theirs), so ``.to(device)``, ``state_dict()`` and ``load_state_dict()`` are PyTorch's own;
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
        cpu_resident: keep the store in (pinned) host memory whatever device the model is on;
            :meth:`read` copies the batch's rows to the indices' device.

    Example:
        >>> bank = SoftTargetBank(num_samples=4, num_classes=3)
        >>> bank.write(torch.tensor([2, 0]), torch.tensor([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]]))
        >>> targets, recorded = bank.read(torch.tensor([0, 1]))
        >>> recorded.tolist()
        [True, False]
        >>> sorted(bank.state_dict())
        ['recorded', 'targets']
    """

    row_buffers = ("targets",)
    targets: torch.Tensor

    def __init__(self, num_samples: int, num_classes: int, dtype: torch.dtype | str = torch.float16,
                 device: torch.device | str | None = None, *, validate: bool = True,
                 cpu_resident: bool = False) -> None:
        super().__init__(num_samples, num_classes, device=device, validate=validate, cpu_resident=cpu_resident)
        self.register_buffer("targets", self._zeros(num_samples, num_classes, dtype=resolve_bank_dtype(dtype)))

    @property
    def dtype(self) -> torch.dtype:
        return self.targets.dtype

    def encode(self, probs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (probs.to(self.dtype),)

    def decode(self, targets: torch.Tensor) -> torch.Tensor:  # type: ignore[override]  # takes encode()'s rows
        return targets.float()

    def extra_repr(self) -> str:
        return super().extra_repr() + f", dtype={self.dtype}"


class TopKBank(Bank):
    """A compact bank: per sample, the ``k`` largest probabilities (``dtype``, fp16 by default) and
    their class ids (int16 when C ≤ 32,767, else int32).

    Reading a row gives back a distribution: the stored probabilities at their classes, and the
    leftover mass ``1 − Σ top-k`` spread uniformly over the other ``C − k`` classes ("marginal
    smoothing", as FKD stores ImageNet soft labels). The top-k is not renormalised, which would
    bias the target. Every class keeps a positive probability unless the top-k holds all the mass,
    so the KL stays finite in both directions; with ``k = C`` a row reads exactly as in a dense
    bank of the same dtype.

    Args:
        num_samples: number of training samples N.
        num_classes: number of classes C.
        k: how many probabilities to keep per sample, ``1 <= k <= C``.
        dtype: storage dtype of the probabilities.
        device, validate, cpu_resident: as for :class:`SoftTargetBank`.

    Example:
        >>> bank = TopKBank(num_samples=2, num_classes=5, k=2, dtype="float32")
        >>> bank.write(torch.tensor([0]), torch.tensor([[0.6, 0.1, 0.2, 0.05, 0.05]]))
        >>> [round(p, 4) for p in bank.read(torch.tensor([0]))[0][0].tolist()]
        [0.6, 0.0667, 0.2, 0.0667, 0.0667]
        >>> bank.classes.dtype, bank.nbytes_per_sample()     # 2 fp32 values, 2 int16 ids, 1 flag
        (torch.int16, 13)
    """

    row_buffers = ("values", "classes")
    zero_unrecorded_rows = True
    values: torch.Tensor
    classes: torch.Tensor

    def __init__(self, num_samples: int, num_classes: int, k: int, dtype: torch.dtype | str = torch.float16,
                 device: torch.device | str | None = None, *, validate: bool = True,
                 cpu_resident: bool = False) -> None:
        super().__init__(num_samples, num_classes, device=device, validate=validate, cpu_resident=cpu_resident)
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= num_classes:
            raise ValueError(f"bank_topk (k) must be an int in [1, num_classes={num_classes}], got {k!r}")
        self.k = k
        index_dtype = torch.int16 if num_classes <= torch.iinfo(torch.int16).max else torch.int32
        self.register_buffer("values", self._zeros(num_samples, k, dtype=resolve_bank_dtype(dtype)))
        self.register_buffer("classes", self._zeros(num_samples, k, dtype=index_dtype))

    @property
    def dtype(self) -> torch.dtype:
        return self.values.dtype

    def encode(self, probs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        values, classes = probs.topk(self.k, dim=1)
        return values.to(self.dtype), classes.to(self.classes.dtype)

    def decode(self, values: torch.Tensor,  # type: ignore[override]  # takes encode()'s rows
               classes: torch.Tensor) -> torch.Tensor:
        values = values.float()
        rest = self.num_classes - self.k
        tail = ((1.0 - values.sum(dim=1)).clamp_min(0.0) / rest) if rest else values.new_zeros(values.shape[0])
        out = tail[:, None].expand(values.shape[0], self.num_classes).clone()
        return out.scatter_(1, classes.long(), values)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", k={self.k}, dtype={self.dtype}"


def finite_rows(*rows: torch.Tensor) -> torch.Tensor:
    """Bool per row: every floating-point value of the row (in each of ``rows``) is finite."""
    finite = torch.ones(rows[0].shape[0], dtype=torch.bool, device=rows[0].device)
    for row in rows:
        if row.is_floating_point():
            finite &= torch.isfinite(row).reshape(row.shape[0], -1).all(dim=1)
    return finite


def make_bank(num_samples: int, num_classes: int, *, bank_format: str = "dense", bank_topk: int | None = None,
              dtype: torch.dtype | str = torch.float16, bank_device: str | None = None,
              device: torch.device | str | None = None, validate: bool = True) -> Bank:
    """A bank from the settings a method (and a config's ``method_args``) takes.

    Args:
        bank_format: ``"dense"`` (:class:`SoftTargetBank`) or ``"topk"`` (:class:`TopKBank`).
        bank_topk: k of the top-k format (required for it, refused for the dense one).
        dtype: storage dtype of the probabilities.
        bank_device: ``None`` (the bank follows the model) or ``"cpu"`` (stays in pinned host memory).

    Example:
        >>> make_bank(1000, 100, bank_format="topk", bank_topk=5)
        TopKBank(num_samples=1000, num_classes=100, device=cpu, k=5, dtype=torch.float16)
    """
    check_bank_settings(bank_format, bank_topk, bank_device)
    resident = bank_device == "cpu"
    if bank_topk is not None:   # the top-k format (check_bank_settings ties k to it)
        return TopKBank(num_samples, num_classes, bank_topk, dtype, device, validate=validate, cpu_resident=resident)
    return SoftTargetBank(num_samples, num_classes, dtype, device, validate=validate, cpu_resident=resident)


def check_bank_settings(bank_format: str, bank_topk: int | None, bank_device: str | None) -> None:
    """Raise ``ValueError`` for a bank format, k or bank device that makes no sense."""
    if bank_format not in BANK_FORMATS:
        raise ValueError(f"bank_format must be one of {BANK_FORMATS}, got {bank_format!r}")
    if bank_format == "topk" and bank_topk is None:
        raise ValueError("bank_format='topk' needs bank_topk=k (how many probabilities to keep per sample, "
                         "e.g. 5 or 10)")
    if bank_format == "dense" and bank_topk is not None:
        raise ValueError(f"bank_topk={bank_topk!r} is only used with bank_format='topk'; set bank_format='topk' "
                         "or drop bank_topk")
    if bank_device not in (None, "cpu"):
        raise ValueError(f"bank_device must be None (beside the model) or 'cpu' (host memory), got {bank_device!r}")
