"""Label smoothing (Szegedy, Vanhoucke, Ioffe, Shlens & Wojna, "Rethinking the Inception
Architecture for Computer Vision", CVPR 2016, Sec. 7). Not a baseline of the LSTSD paper; a
teacher-free regulariser that is the natural control for methods that soften the targets
(Yuan et al., "Revisiting Knowledge Distillation via Label Smoothing Regularization", CVPR 2020).

The target of a sample with label y is ``(1 − ε)·onehot(y) + ε/C`` (uniform over the C classes),
so the loss is ``(1 − ε)·CE + ε·(−1/C Σ_c log p_c)``; it is computed by
``F.cross_entropy(logits, y, label_smoothing=ε)``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import LossParts, Method
from .settings import check_fraction


class LabelSmoothing(Method):
    """Cross-entropy against label-smoothed targets.

    Args:
        num_samples: training-set size N.
        num_classes: number of classes C.
        smoothing: ε, the probability mass spread uniformly over the classes (default 0.1).
        validate: check every batch.

    Components: ``ce`` (hard-label CE), ``smooth`` (cross-entropy against the uniform
    distribution) and ``total = (1 − ε)·ce + ε·smooth``.

    Example:
        >>> method = LabelSmoothing(num_samples=50000, num_classes=10, smoothing=0.1)
        >>> method.start_epoch(0)
        >>> loss = method.loss(torch.zeros(2, 10), torch.tensor([3, 7]), torch.tensor([0, 1]))
        >>> round(loss.item(), 4)                   # uniform logits: ln 10 whatever ε
        2.3026
    """

    name = "label_smoothing"
    accepts_sequences = True

    def __init__(self, num_samples: int, num_classes: int, smoothing: float = 0.1, validate: bool = True) -> None:
        super().__init__(num_samples, num_classes, validate=validate)
        self.smoothing = check_fraction("smoothing (ε)", smoothing)

    def compute_loss(self, epoch: int, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None, *,
                     model: nn.Module | None, inputs: Any) -> tuple[torch.Tensor, LossParts]:
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=self.smoothing)
        with torch.no_grad():
            log_p = F.log_softmax(logits.detach().float(), dim=1)
            ce = -log_p.gather(1, targets.long()[:, None]).mean()
            smooth = -log_p.mean()
        return loss, {"ce": (ce, 1.0 - self.smoothing), "smooth": (smooth, self.smoothing)}

    def hparams(self) -> dict[str, Any]:
        return {**super().hparams(), "smoothing": self.smoothing}
