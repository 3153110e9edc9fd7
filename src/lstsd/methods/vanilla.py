"""Vanilla training: cross-entropy on the ground truth only (the paper's "Vanilla" rows)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..losses import cross_entropy
from .base import LossParts, Method


class Vanilla(Method):
    """Plain cross-entropy, ``L = -1/|B| Σ ln f_{y_i}(x_i; θ)`` (paper, "Mini-Batch SGD Optimization")."""

    name = "vanilla"
    accepts_sequences = True

    def compute_loss(self, epoch: int, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None, *,
                     model: nn.Module | None, inputs: Any) -> tuple[torch.Tensor, LossParts]:
        loss = cross_entropy(logits, targets)
        return loss, {"ce": (loss, 1.0)}
