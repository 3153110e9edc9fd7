"""Per-token soft-target banks for causal language models (``docs/decisions.md``, "Per-token banks").

A causal LM makes one prediction per token over a vocabulary of ``V`` tokens, so its per-sample
teacher is one target per *supervised* token of each training example: the positions whose label
is not -100 after the causal shift (``logits[:, t]`` predicts ``labels[:, t + 1]``, as the Hugging
Face causal-LM loss does). Prompt and padding positions store nothing.

**Layout.** Ragged: one flat array of rows and, per example, an offset into it and its number of
supervised tokens, fixed the first time the example is written (later, a different count is an
error: another tokenisation, random truncation or packing would break the alignment that per-sample
distillation relies on). Examples get their offsets in the order they are first written (in
ascending example index within a step, so every rank of a process group lays them out alike).

**Formats** (never dense over the vocabulary; :mod:`lstsd.sparse` computes the KL against them):

* ``topk``: the ``k`` largest softened probabilities (fp16) and their token ids (int32); the
  leftover mass is spread uniformly over the other ``V − k`` tokens;
* ``sampled``: ``s`` tokens drawn from the softened prediction, stored once each with their share
  of the draws (fp16), nothing elsewhere — an unbiased estimate of the teacher (Anshumann et al.,
  "Sparse Logit Sampling: Accelerating Knowledge Distillation in LLMs", ACL 2025). The draws use the
  bank's own generator, seeded by ``seed`` and the number of writes so far, so a resumed run draws
  what the uninterrupted one drew and the global random stream is untouched.

A token is addressed by a *key*, ``example << 20 | j`` for the ``j``-th supervised token of the
example (:func:`token_keys`), so the methods' per-sample code (reads, the row exchange under
torch.distributed, writes) runs unchanged on tokens.

Example:
    >>> bank = TokenBank(num_samples=3, num_classes=6, bank_format="topk", k=2, cpu_resident=False)
    >>> labels = torch.tensor([[-100, 4, 2, -100], [-100, -100, 1, 5]])
    >>> mask, _ = supervised_positions(labels)
    >>> keys = token_keys(torch.tensor([2, 0]), mask)
    >>> probs = torch.softmax(torch.randn(int(mask.sum()), 6), dim=1)
    >>> bank.store(keys, *bank.encode(probs))
    >>> bank.counts.tolist(), bank.offsets.tolist()           # example 0 first: ascending order
    ([2, -1, 2], [0, 0, 2])
    >>> targets, recorded = bank.read(keys)
    >>> recorded.tolist(), targets.ids.shape
    ([True, True, True, True], torch.Size([4, 2]))
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .sparse import SparseTargets, student_stats

__all__ = ["IGNORE_INDEX", "KEY_BITS", "TOKEN_FORMATS", "TokenBank", "causal_lm_cross_entropy", "supervised_positions",
           "token_keys"]

IGNORE_INDEX = -100            # the label of positions without a loss (Hugging Face's convention)
KEY_BITS = 20                  # supervised tokens per example < 2**20
TOKEN_FORMATS = ("topk", "sampled")
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def supervised_positions(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mask, targets)`` for ``B × T`` labels: ``mask[b, t]`` is True where ``logits[b, t]`` has a
    label (``labels[b, t + 1] != -100``), ``targets`` the labels of those positions in row-major order.

    Example:
        >>> mask, targets = supervised_positions(torch.tensor([[5, -100, 7, 8]]))
        >>> mask.tolist(), targets.tolist()
        ([[False, True, True, False]], [7, 8])
    """
    shifted = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
    mask = shifted != IGNORE_INDEX
    return mask, shifted[mask]


def causal_lm_cross_entropy(logits: torch.Tensor, labels: torch.Tensor,
                            num_items_in_batch: int | torch.Tensor | None = None) -> torch.Tensor:
    """A causal LM's own loss: cross-entropy of ``logits[:, t]`` against ``labels[:, t + 1]`` over the
    supervised tokens, their mean (or their sum divided by ``num_items_in_batch``), in float32.

    Example:
        >>> float(causal_lm_cross_entropy(torch.zeros(1, 3, 4), torch.tensor([[-100, 1, 2]])))  # ln 4
        1.3862943649291992
    """
    mask, targets = supervised_positions(labels.to(logits.device))
    rows = logits[mask].float()
    if num_items_in_batch is None:
        return torch.nn.functional.cross_entropy(rows, targets) if rows.shape[0] else logits.sum() * 0.0
    return torch.nn.functional.cross_entropy(rows, targets, reduction="sum") / num_items_in_batch


def token_keys(example_indices: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The key ``example << 20 | j`` of each supervised position of ``mask`` (row-major), ``j`` its
    rank among its example's supervised positions.

    Example:
        >>> token_keys(torch.tensor([1, 0]), torch.tensor([[False, True, True], [True, False, False]])).tolist()
        [1048576, 1048577, 0]
    """
    rank = mask.long().cumsum(dim=1) - 1
    examples = example_indices.long().to(mask.device)[:, None].expand_as(mask)
    return (examples[mask] << KEY_BITS) | rank[mask]


def _to_device(rows: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``rows`` (gathered on the host) on ``device``, staged in pinned memory when pinning is available."""
    if rows.device.type == "cpu" and device.type != "cpu" and torch.cuda.is_available():
        rows = rows.pin_memory()
    return rows.to(device, non_blocking=True)


class TokenBank(nn.Module):
    """Sparse soft targets of every supervised token of ``num_samples`` examples, over a vocabulary of
    ``num_classes`` tokens, in a ragged layout (module docstring).

    Args:
        num_samples: training examples N (addressed ``0 … N − 1``).
        num_classes: vocabulary size V.
        bank_format: ``"topk"`` or ``"sampled"``.
        k: probabilities kept per token (``topk``) or draws per token (``sampled``).
        dtype: storage dtype of the probabilities (fp16 default).
        cpu_resident: keep the rows in host memory (pinned where an accelerator runtime exists),
            copying only a batch's rows to the model's device: the default for language models.
        seed: seed of the ``sampled`` format's draws.

    The interface is :class:`lstsd.bank.Bank`'s: :meth:`encode` (probabilities → rows),
    :meth:`store` (rows by key, non-finite rows skipped) and :meth:`read` (keys → targets and a
    recorded mask), with token keys in place of sample indices.
    """

    counts: torch.Tensor
    offsets: torch.Tensor
    values: torch.Tensor
    ids: torch.Tensor
    recorded: torch.Tensor
    writes: torch.Tensor

    def __init__(self, num_samples: int, num_classes: int, *, bank_format: str = "topk", k: int = 8,
                 dtype: torch.dtype | str = torch.float16, cpu_resident: bool = True,
                 device: torch.device | str | None = None, seed: int = 0) -> None:
        super().__init__()
        if bank_format not in TOKEN_FORMATS:
            raise ValueError(f"a per-token bank's format must be one of {TOKEN_FORMATS}, got {bank_format!r} "
                             "(a dense row over the vocabulary does not fit)")
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= num_classes:
            what = "bank_topk" if bank_format == "topk" else "bank_samples"
            raise ValueError(f"{what} must be an int in [1, vocabulary size {num_classes}], got {k!r}")
        self.num_samples, self.num_classes = num_samples, num_classes
        self.format, self.k, self.seed = bank_format, k, int(seed)
        self.cpu_resident = bool(cpu_resident)
        self._storage_device = torch.device("cpu") if self.cpu_resident else device
        dtype = _DTYPES[dtype.removeprefix("torch.")] if isinstance(dtype, str) else dtype
        self.register_buffer("counts", torch.full((num_samples,), -1, dtype=torch.int32,
                                                  device=self._storage_device))
        self.register_buffer("offsets", torch.zeros(num_samples, dtype=torch.int64, device=self._storage_device))
        self.register_buffer("values", self._zeros(0, k, dtype=dtype))
        self.register_buffer("ids", self._zeros(0, k, dtype=torch.int32))
        self.register_buffer("recorded", self._zeros(0, dtype=torch.bool))
        self.register_buffer("writes", torch.zeros((), dtype=torch.int64))
        self.filled = 0                                   # rows in use (the rest is room to grow)

    def _zeros(self, *shape: int, dtype: torch.dtype) -> torch.Tensor:
        pin = self.cpu_resident and torch.cuda.is_available()
        return torch.zeros(*shape, dtype=dtype, device=self._storage_device, pin_memory=pin)

    @property
    def device(self) -> torch.device:
        return self.counts.device

    def nbytes_per_token(self) -> int:
        """Bytes of storage per supervised token (probabilities, ids and the recorded flag)."""
        return self.k * (self.values.element_size() + self.ids.element_size()) + 1

    # ------------------------------------------------------------------ format
    def encode(self, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Probability rows (``n × V``, softened) → ``(values, ids)`` in storage form."""
        probs = probs.detach().float()
        if self.format == "topk":
            values, ids = probs.topk(self.k, dim=1)
            return values.to(self.values.dtype), ids.to(torch.int32)
        return self._sample(probs.clamp_min(0.0))

    def encode_logits(self, logits: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`encode` of ``softmax(logits / T)``; the top-k format needs no ``n × V`` softmax."""
        logits = logits.detach()
        if self.format == "topk":                   # the top-k of z / T are those of z
            top, ids = logits.topk(self.k, dim=1)
            lse, _ = student_stats(logits, temperature)
            values = (top.float() / temperature - lse[:, None]).exp()
            return values.to(self.values.dtype), ids.to(torch.int32)
        scaled = logits if temperature == 1.0 else logits.float() / temperature    # no n × V copy at T = 1
        return self._sample(torch.softmax(scaled, dim=1, dtype=torch.float32))

    def _sample(self, probs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``k`` draws per row, merged: each drawn token once, with (draws of it) / k; zeros after."""
        generator = torch.Generator(device=probs.device)
        generator.manual_seed(self.seed * 1_000_003 + int(self.writes))
        self.writes += 1
        if probs.shape[0] == 0:
            return probs.new_zeros(0, self.k).to(self.values.dtype), torch.zeros(0, self.k, dtype=torch.int32)
        # A row of probabilities (each in [0, 1]) sums to a finite number iff every entry is finite:
        # one reduction, where an elementwise check and a masked copy cost two n × V passes more. (The
        # `if` reads a flag on the host, as store's checks do anyway for every write.)
        finite = torch.isfinite(probs.sum(dim=1, keepdim=True))
        if not bool(finite.all()):
            # A non-finite row is not written (store); draw from a placeholder so multinomial accepts it.
            probs = torch.where(finite, probs, torch.ones_like(probs))
        drawn, _ = torch.multinomial(probs, self.k, replacement=True, generator=generator).sort(dim=1)
        first = torch.ones_like(drawn, dtype=torch.bool)
        first[:, 1:] = drawn[:, 1:] != drawn[:, :-1]
        group = first.long().cumsum(dim=1) - 1                     # slot of each draw's token
        weights = torch.zeros(drawn.shape, dtype=torch.float32, device=drawn.device)
        weights.scatter_add_(1, group, torch.full(drawn.shape, 1.0 / self.k, device=drawn.device))
        ids = torch.zeros_like(drawn).scatter_(1, group, drawn)
        weights = torch.where(finite, weights, torch.full_like(weights, float("nan")))
        return weights.to(self.values.dtype), ids.to(torch.int32)

    def targets(self, values: torch.Tensor, ids: torch.Tensor, recorded: torch.Tensor) -> SparseTargets:
        """Stored rows → :class:`lstsd.sparse.SparseTargets` (unrecorded rows: probability 0 everywhere)."""
        probs = torch.where(recorded[:, None], values.float(), torch.zeros_like(values, dtype=torch.float32))
        rest = self.num_classes - self.k
        if self.format == "topk" and rest:
            tail = torch.where(recorded, (1.0 - probs.sum(dim=1)).clamp_min(0.0) / rest, torch.zeros_like(probs[:, 0]))
        else:
            tail = torch.zeros_like(probs[:, 0])
        return SparseTargets(ids.long(), probs, tail, self.num_classes)

    # ------------------------------------------------------------------ layout
    def check_counts(self, examples: torch.Tensor, counts: torch.Tensor) -> None:
        """Refuse examples whose number of supervised tokens differs from the one first written."""
        stored = self.counts[examples.to(self.device).long()]
        changed = (stored >= 0) & (stored != counts.to(self.device))
        if bool(changed.any()):
            i = int(changed.nonzero()[0, 0])
            raise ValueError(f"example {int(examples[i])} has {int(counts[i])} supervised tokens but had "
                             f"{int(stored[i])} when first seen: per-token targets need each example tokenised the "
                             "same way every epoch (no random truncation, packing or changed template)")

    def _rows(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(rows, known)``: each key's row in the flat arrays and whether its example has one."""
        keys = keys.to(self.device).long()
        examples, position = keys >> KEY_BITS, keys & ((1 << KEY_BITS) - 1)
        if bool(((examples < 0) | (examples >= self.num_samples)).any()):
            bad = int(examples[(examples < 0) | (examples >= self.num_samples)][0])
            raise ValueError(f"example index {bad} is outside [0, {self.num_samples}); the method was built with "
                             f"num_samples={self.num_samples}: pass the number of training examples")
        count = self.counts[examples]
        known = (count >= 0) & (position < count)
        return torch.where(known, self.offsets[examples] + position, torch.zeros_like(position)), known

    def _assign(self, keys: torch.Tensor) -> None:
        """Give the examples of ``keys`` that have no rows yet their offsets and counts (in ascending
        example order), growing the flat arrays; refuse a count that differs from the stored one."""
        keys = keys.to(self.device).long()
        examples = keys >> KEY_BITS
        present, per_example = torch.unique(examples, return_counts=True)
        self.check_counts(present, per_example.to(torch.int32))
        new = self.counts[present] < 0
        if not bool(new.any()):
            return
        fresh, sizes = present[new], per_example[new]
        self.offsets[fresh] = self.filled + torch.cumsum(sizes, 0) - sizes
        self.counts[fresh] = sizes.to(torch.int32)
        self._grow(self.filled + int(sizes.sum()))

    def _grow(self, needed: int) -> None:
        if needed > self.values.shape[0]:
            capacity = max(needed, int(self.values.shape[0] * 1.5) + 1024)
            for name in ("values", "ids", "recorded"):
                old = getattr(self, name)
                new = self._zeros(capacity, *old.shape[1:], dtype=old.dtype)
                new[:old.shape[0]] = old
                setattr(self, name, new)
        self.filled = needed

    # ------------------------------------------------------------------ rows
    def store(self, keys: torch.Tensor, *rows: torch.Tensor, finite: torch.Tensor | None = None) -> None:
        """Write rows already in storage form (``values, ids`` from :meth:`encode`); keys must be
        unique. A row holding NaN or inf is not written (the token keeps its previous target)."""
        values, ids = rows
        self._assign(keys)
        where, _ = self._rows(keys)
        values, ids = values.to(self.device, self.values.dtype), ids.to(self.device, torch.int32)
        ok = torch.isfinite(values.float()).all(dim=1) if finite is None else finite.to(self.device)
        self.values[where] = torch.where(ok[:, None], values, self.values[where])
        self.ids[where] = torch.where(ok[:, None], ids, self.ids[where])
        self.recorded[where] = self.recorded[where] | ok

    def read(self, keys: torch.Tensor, device: torch.device | str | None = None) -> tuple[SparseTargets, torch.Tensor]:
        """``(targets, recorded)`` for ``keys`` on ``device`` (default: the keys' device); tokens of an
        example never written come back with probability 0 and ``recorded`` False."""
        out = keys.device if device is None else torch.device(device)
        rows, known = self._rows(keys)
        if self.values.shape[0] == 0:                   # nothing written yet
            values = torch.zeros(rows.shape[0], self.k, dtype=self.values.dtype, device=self.device)
            ids = torch.zeros(rows.shape[0], self.k, dtype=torch.int32, device=self.device)
            recorded = torch.zeros_like(known)
        else:
            values, ids, recorded = self.values[rows], self.ids[rows], self.recorded[rows] & known
        if out != self.device:   # through pinned memory (where pinning exists), so the copies do not block
            values, ids, recorded = (_to_device(t, out) for t in (values, ids, recorded))
        return self.targets(values, ids, recorded), recorded

    # ------------------------------------------------------------------ nn.Module plumbing
    def _apply(self, fn: Any, recurse: bool = True) -> TokenBank:
        return self if self.cpu_resident else super()._apply(fn, recurse)

    def _save_to_state_dict(self, destination: dict[str, Any], prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for name in ("values", "ids", "recorded"):       # the rows in use, not the room to grow
            destination[prefix + name] = destination[prefix + name][:self.filled]

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        saved = state_dict.get(prefix + "values")
        if isinstance(saved, torch.Tensor):
            if saved.shape[1:] != self.values.shape[1:] or saved.dtype != self.values.dtype:
                raise ValueError(f"cannot load a per-token bank saved with {tuple(saved.shape[1:])} entries of "
                                 f"{saved.dtype} per token into one with {tuple(self.values.shape[1:])} of "
                                 f"{self.values.dtype}: the checkpoint comes from another bank format, k or dtype")
            for name in ("values", "ids", "recorded"):   # make room for the saved rows, then let PyTorch copy
                old = getattr(self, name)
                setattr(self, name, self._zeros(saved.shape[0], *old.shape[1:], dtype=old.dtype))
            self.filled = saved.shape[0]
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        return (f"num_samples={self.num_samples}, num_classes={self.num_classes}, format={self.format}, "
                f"k={self.k}, dtype={self.values.dtype}" + (", cpu_resident=True" if self.cpu_resident else ""))
