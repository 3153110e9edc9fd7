"""Input validation shared by the banks and the methods.

Every check that needs the values of a tensor (ranges, duplicates, finiteness) is folded into a
single host synchronisation, so validating a batch on CUDA costs one sync rather than one per check.
"""

from __future__ import annotations

import torch

_INTEGER_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def check_sizes(num_samples: object, num_classes: object) -> None:
    """Check the N and C that a bank or a method is built for (positive N, C >= 2)."""
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive int (the training-set size), got {num_samples!r}")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")


def _indices_form(indices: object, *, batch_size: int | None, name: str) -> torch.Tensor:
    """The checks of ``indices`` that need no values: type, dtype, shape, length."""
    if not isinstance(indices, torch.Tensor):
        raise ValueError(
            f"{name} must be a 1-D integer torch.Tensor of sample indices, got {type(indices).__name__}; "
            "wrap your data set in lstsd.data.IndexedDataset so that each batch carries its samples' indices")
    if indices.dtype not in _INTEGER_DTYPES:
        raise ValueError(
            f"{name} must hold integers (sample indices), got dtype {indices.dtype}; did you pass the "
            "inputs or the logits where the indices belong? Use the third element that "
            "lstsd.data.IndexedDataset yields")
    if indices.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one index per sample), got shape {tuple(indices.shape)}")
    if batch_size is not None and indices.numel() != batch_size:
        raise ValueError(
            f"{name} has {indices.numel()} entries but the batch has {batch_size} samples; "
            "pass one index per row of the logits")
    return indices


def _indices_stats(indices: torch.Tensor, allow_repeats: bool) -> list[torch.Tensor]:
    repeated = (torch.unique(indices).numel() != indices.numel()) if not allow_repeats else False
    return [indices.min().long(), indices.max().long(), torch.as_tensor(repeated, device=indices.device).long()]


def _indices_values(lo: int, hi: int, repeated: int, num_samples: int, name: str) -> None:
    if lo < 0 or hi >= num_samples:
        bad = lo if lo < 0 else hi
        raise ValueError(
            f"{name} contains {bad}, outside [0, {num_samples}); the method was built with "
            f"num_samples={num_samples}: pass len(train_set) and index samples from 0")
    if repeated:
        raise ValueError(
            f"{name} repeats a sample within one batch; each sample may be written once per batch "
            "(use a sampler without replacement, or de-duplicate the batch)")


def check_indices(indices: object, num_samples: int, *, batch_size: int | None = None,
                  allow_repeats: bool = False, name: str = "indices") -> torch.Tensor:
    """Check that ``indices`` can address rows of an ``num_samples``-row bank; return it as int64.

    Raises:
        ValueError: ``indices`` is not a 1-D integer tensor, its length differs from
            ``batch_size``, a value is outside ``[0, num_samples)``, or (unless ``allow_repeats``)
            an index appears twice.
    """
    indices = _indices_form(indices, batch_size=batch_size, name=name)
    if indices.numel() == 0:
        return indices.long()
    lo, hi, repeated = torch.stack(_indices_stats(indices, allow_repeats)).tolist()  # one sync
    _indices_values(lo, hi, repeated, num_samples, name)
    return indices.long()


def check_probabilities(probs: object, rows: int, num_classes: int, *, name: str = "probs") -> None:
    """Check that ``probs`` is a finite ``rows × num_classes`` tensor whose rows sum to 1.

    The tolerance on the row sums depends on the dtype: 1e-3 for fp32/fp64, 2e-2 for fp16/bf16.
    """
    if not isinstance(probs, torch.Tensor) or not probs.is_floating_point():
        raise ValueError(f"{name} must be a floating-point torch.Tensor, got "
                         f"{getattr(probs, 'dtype', type(probs).__name__)}")
    if tuple(probs.shape) != (rows, num_classes):
        raise ValueError(f"{name} must have shape ({rows}, {num_classes}) (one probability row per index), "
                         f"got {tuple(probs.shape)}")
    if probs.numel() == 0:
        return
    tolerance = 1e-3 if probs.dtype in (torch.float32, torch.float64) else 2e-2
    values = probs.float()
    finite = torch.isfinite(values).all()
    sums = values.sum(dim=1)
    worst = (sums - 1).abs().max()
    negative = (values < 0).any()
    finite_v, worst_v, negative_v = torch.stack(
        [finite.float(), worst.nan_to_num(float("inf")), negative.float()]).tolist()
    if not finite_v:
        raise ValueError(f"{name} contains NaN or infinite values; the model's outputs diverged "
                         "(lower the learning rate or check the inputs)")
    if negative_v:
        raise ValueError(f"{name} contains negative values: pass probabilities (softmax outputs), not logits")
    if worst_v > tolerance:
        raise ValueError(f"{name} rows must sum to 1 (largest deviation {worst_v:.3g} > {tolerance}): "
                         "pass softmax(logits), not logits or log-probabilities")


def check_logits(logits: object, *, name: str = "logits", num_classes: int | None = None) -> torch.Tensor:
    """Check that ``logits`` is a floating-point ``batch × num_classes`` tensor."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point():
        raise ValueError(f"{name} must be a floating-point torch.Tensor, got "
                         f"{getattr(logits, 'dtype', type(logits).__name__)}")
    if logits.dim() != 2:
        raise ValueError(f"{name} must have shape (batch, num_classes), got {tuple(logits.shape)}")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(f"{name} has {logits.shape[1]} classes but the method was built with "
                         f"num_classes={num_classes}")
    return logits


def _targets_form(targets: object, batch_size: int) -> torch.Tensor:
    if not isinstance(targets, torch.Tensor) or targets.dtype not in _INTEGER_DTYPES:
        raise ValueError(f"targets must be an integer tensor of class indices, got "
                         f"{getattr(targets, 'dtype', type(targets).__name__)}")
    if tuple(targets.shape) != (batch_size,):
        raise ValueError(f"targets must have shape ({batch_size},) to match the logits, got {tuple(targets.shape)}")
    return targets


def _targets_values(lo: int, hi: int, num_classes: int) -> None:
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"targets contain class {lo if lo < 0 else hi}, outside [0, {num_classes})")


def check_targets(targets: object, batch_size: int, num_classes: int) -> torch.Tensor:
    """Check that ``targets`` holds one class index in ``[0, num_classes)`` per sample."""
    targets = _targets_form(targets, batch_size)
    if batch_size:
        lo, hi = torch.stack([targets.min().long(), targets.max().long()]).tolist()
        _targets_values(lo, hi, num_classes)
    return targets


def check_batch(logits: object, targets: object, indices: object | None, *, num_samples: int,
                num_classes: int) -> torch.Tensor | None:
    """Check a training batch in one host synchronisation: logits ``B × C`` and finite, targets in
    ``[0, C)``, indices (if given) unique in ``[0, N)``. Returns the indices as int64.

    Non-finite logits are refused before anything is recorded: a NaN written into a bank would
    poison that sample's targets for the epochs to come.
    """
    logits = check_logits(logits, num_classes=num_classes)
    batch = logits.shape[0]
    targets = _targets_form(targets, batch)
    if indices is not None:
        indices = _indices_form(indices, batch_size=batch, name="indices")
    if batch == 0:
        return None if indices is None else indices.long()
    stats = [torch.isfinite(logits).all().long(), targets.min().long(), targets.max().long()]
    if indices is not None:
        stats += _indices_stats(indices, allow_repeats=False)
    finite, t_lo, t_hi, *index_stats = torch.stack([s.to(logits.device) for s in stats]).tolist()  # one sync
    _targets_values(t_lo, t_hi, num_classes)
    return _indices_and_finite(indices, index_stats, finite, num_samples)


def _indices_and_finite(indices: torch.Tensor | None, index_stats: list[int], finite: int,
                        num_samples: int) -> torch.Tensor | None:
    """The end of a batch check: the indices' values (from their synced stats), then finite logits."""
    if indices is not None and index_stats:
        low, high, repeated = index_stats
        _indices_values(low, high, repeated, num_samples, "indices")
    if not finite:
        raise ValueError("logits contain NaN or infinite values (nothing was recorded for this batch): the "
                         "model diverged or its inputs are not finite; lower the learning rate, use fp32, "
                         "or check the data")
    return None if indices is None else indices.long()


def check_sequence_batch(logits: object, labels: object, indices: object | None, *, num_samples: int,
                         num_classes: int) -> torch.Tensor | None:
    """Check a causal LM's batch in one host synchronisation: logits ``B × T × V`` (V the method's
    ``num_classes``) and finite, labels ``B × T`` in ``[0, V)`` or -100, indices (if given) ``B``
    unique example indices in ``[0, N)``. Returns the indices as int64."""
    if not isinstance(logits, torch.Tensor) or not logits.is_floating_point() or logits.dim() != 3:
        raise ValueError(f"logits must be a floating-point B × T × V tensor (a causal LM's), got "
                         f"{getattr(logits, 'dtype', type(logits).__name__)} {tuple(getattr(logits, 'shape', ()))}")
    if logits.shape[2] != num_classes:
        raise ValueError(f"logits have {logits.shape[2]} columns but the method was built with num_classes="
                         f"{num_classes}: pass the model's vocabulary size (its output layer's width)")
    if (not isinstance(labels, torch.Tensor) or labels.dtype not in _INTEGER_DTYPES
            or tuple(labels.shape) != tuple(logits.shape[:2])):
        raise ValueError(f"labels must be an integer B × T tensor matching the logits {tuple(logits.shape[:2])}, "
                         f"got {getattr(labels, 'dtype', type(labels).__name__)} {tuple(getattr(labels, 'shape', ()))}")
    batch = logits.shape[0]
    if indices is not None:
        indices = _indices_form(indices, batch_size=batch, name="indices")
    if labels.numel() == 0:
        return None if indices is None else indices.long()
    supervised = labels != -100
    stats = [torch.isfinite(logits).all().long(),
             torch.where(supervised, labels, 0).min().long(), torch.where(supervised, labels, 0).max().long()]
    if indices is not None and batch:
        stats += _indices_stats(indices, allow_repeats=False)
    finite, lo, hi, *index_stats = torch.stack([s.to(logits.device) for s in stats]).tolist()  # one sync
    if lo < 0 or hi >= num_classes:
        raise ValueError(f"labels contain token {lo if lo < 0 else hi}, outside [0, {num_classes}) and not -100 "
                         "(the label of positions without a loss)")
    return _indices_and_finite(indices, index_stats, finite, num_samples)
