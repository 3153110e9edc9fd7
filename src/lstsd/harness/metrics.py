"""Classification metrics used in the paper's tables: accuracy, Matthews correlation, binary F1.

scikit-learn computes them (``sklearn.metrics``); this module is the harness's front end, shared
by the vision and text tasks: it checks and converts the inputs, names the metrics (with
aliases) and reports percentages. Every function takes ``preds`` and ``labels`` as tensors (or
anything ``torch.as_tensor`` accepts): ``preds`` are class indices of shape ``(N,)`` or logits
of shape ``(N, C)`` (arg-maxed); ``labels`` are class indices ``(N,)``. The single-metric
functions return a plain float in natural units (accuracy and F1 in [0, 1], MCC in [-1, 1]);
:func:`compute_metrics` returns percentages (x100) keyed by name, as reported in the paper
(GLUE convention: accuracy for RTE / SST-2, accuracy and F1 for MRPC, Matthews correlation for
CoLA).

Example:
    >>> import torch
    >>> preds, labels = torch.tensor([1, 0, 1, 1]), torch.tensor([1, 0, 0, 1])
    >>> accuracy(preds, labels)
    0.75
    >>> round(f1_binary(preds, labels), 4)
    0.8
    >>> round(matthews_corrcoef(preds, labels), 4)
    0.5774
    >>> compute_metrics(("accuracy", "f1"), preds, labels)
    {'accuracy': 75.0, 'f1': 80.0}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from sklearn import metrics as skm

__all__ = ["LOWER_IS_BETTER", "METRICS", "accuracy", "available_metrics", "compute_metrics", "confusion_matrix",
           "f1_binary", "lower_is_better", "matthews_corrcoef", "metric_label"]


def _as_indices(x: Any, what: str) -> torch.Tensor:
    t = torch.as_tensor(x).detach().cpu()
    if t.ndim == 2 and what == "preds":  # logits / probabilities -> class indices
        t = t.argmax(dim=1)
    if t.ndim != 1:
        raise ValueError(f"{what} must be 1-D class indices" + (" or 2-D N×C scores" if what == "preds" else "")
                         + f", got shape {tuple(t.shape)}")
    if t.is_floating_point() and not torch.equal(t, t.round()):
        raise ValueError(f"{what} must hold integer class indices")
    return t.long()


def _pair(preds: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """``preds`` and ``labels`` checked, as int64 class-index arrays for scikit-learn."""
    p, y = _as_indices(preds, "preds"), _as_indices(labels, "labels")
    if p.shape != y.shape:
        raise ValueError(f"preds and labels differ in length: {p.numel()} vs {y.numel()}")
    if p.numel() == 0:
        raise ValueError("cannot compute a metric on zero samples")
    if int(p.min()) < 0 or int(y.min()) < 0:
        raise ValueError("class indices must be non-negative")
    return p.numpy(), y.numpy()


def confusion_matrix(preds: Any, labels: Any, num_classes: int | None = None) -> torch.Tensor:
    """``K×K`` int64 counts, rows = true class, columns = predicted class.

    ``K`` is ``num_classes``, by default the largest class index that occurs plus one.

    Example:
        >>> confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1])).tolist()
        [[1, 1], [0, 1]]
    """
    p, y = _pair(preds, labels)
    k = max(int(p.max()), int(y.max())) + 1
    if num_classes is not None:
        if num_classes < k:
            raise ValueError(f"num_classes={num_classes} but a class index {k - 1} occurs")
        k = num_classes
    return torch.as_tensor(skm.confusion_matrix(y, p, labels=np.arange(k)), dtype=torch.int64)


def accuracy(preds: Any, labels: Any) -> float:
    """Fraction of ``preds`` equal to ``labels``, in [0, 1].

    Example:
        >>> accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))  # logits arg-maxed
        0.5
    """
    p, y = _pair(preds, labels)
    return float(skm.accuracy_score(y, p))


def matthews_corrcoef(preds: Any, labels: Any) -> float:
    """Matthews correlation coefficient, binary or multi-class, in [-1, 1].

    0 when it is undefined (all predictions, or all labels, in one class), as in scikit-learn.

    Example:
        >>> matthews_corrcoef(torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 2, 0]))
        1.0
        >>> matthews_corrcoef(torch.tensor([1, 1, 1]), torch.tensor([0, 1, 1]))
        0.0
    """
    p, y = _pair(preds, labels)
    return float(skm.matthews_corrcoef(y, p))


def f1_binary(preds: Any, labels: Any, positive: int = 1) -> float:
    """F1 of class ``positive`` (harmonic mean of its precision and recall), in [0, 1].

    Any number of classes (the others count as negative). 0 when there are no true positives
    (including the 0/0 cases): scikit-learn's ``zero_division=0``.

    Example:
        >>> round(f1_binary(torch.tensor([1, 1, 0, 0]), torch.tensor([1, 0, 1, 0])), 4)
        0.5
    """
    p, y = _pair(preds, labels)
    return float(skm.f1_score(y, p, labels=[positive], average="macro", zero_division=0))


METRICS: dict[str, Callable[[Any, Any], float]] = {
    "accuracy": accuracy,
    "matthews": matthews_corrcoef,
    "f1": f1_binary,
}
_ALIASES = {"acc": "accuracy", "mcc": "matthews", "matthews_corrcoef": "matthews", "f1_binary": "f1"}


def available_metrics() -> list[str]:
    """Names accepted by :func:`compute_metrics`, besides the aliases (``acc``, ``mcc``, ``f1_binary``, ...).

    Example:
        >>> available_metrics()
        ['accuracy', 'matthews', 'f1']
    """
    return list(METRICS)


def compute_metrics(names: str | Iterable[str], preds: Any, labels: Any) -> dict[str, float]:
    """Several metrics at once, as percentages (x100) keyed by their canonical name.

    Args:
        names: metric names (see :func:`available_metrics`) or one name.
        preds: class indices ``(N,)`` or scores ``(N, C)``.
        labels: class indices ``(N,)``.

    Example:
        >>> compute_metrics(["acc", "mcc"], torch.tensor([0, 1]), torch.tensor([0, 1]))
        {'accuracy': 100.0, 'matthews': 100.0}
    """
    if isinstance(names, str):
        names = (names,)
    keys: Sequence[str] = [_ALIASES.get(n.lower(), n.lower()) for n in names]
    unknown = [n for n, k in zip(names, keys) if k not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; available: {', '.join(available_metrics())}")
    p, y = _pair(preds, labels)
    return {k: 100.0 * METRICS[k](p, y) for k in dict.fromkeys(keys)}


# The metrics of the text-generation task (lstsd.harness.text.generation): losses per answer token and
# perplexities, where lower is better. Every other metric (the classification ones above, in %) is
# higher-is-better. The report reads this flag to say so and to count "better" seeds the right way.
LOWER_IS_BETTER: frozenset[str] = frozenset({"loss", "perplexity", "probe_loss", "probe_perplexity"})


def lower_is_better(metric: str) -> bool:
    """Whether a lower value of ``metric`` is better (losses and perplexities).

    Example:
        >>> lower_is_better("loss"), lower_is_better("accuracy")
        (True, False)
    """
    return _ALIASES.get(metric.lower(), metric.lower()) in LOWER_IS_BETTER


def metric_label(metric: str) -> str:
    """How a table or plot names ``metric``: with its unit and, where it applies, its direction.

    Example:
        >>> metric_label("accuracy"), metric_label("loss")
        ('accuracy (%)', 'loss (per token, lower is better)')
    """
    if metric in ("loss", "probe_loss"):
        return f"{metric} (per token, lower is better)"
    if lower_is_better(metric):
        return f"{metric} (lower is better)"
    return f"{metric} (%)"
