"""Vanilla training: cross-entropy on the ground truth only (the paper's "Vanilla" rows)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..losses import cross_entropy
from .base import Method


class Vanilla(Method):
    """Plain cross-entropy, ``L = -1/|B| Σ ln f_{y_i}(x_i; θ)`` (paper, "Mini-Batch SGD Optimization")."""

    name = "vanilla"

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None = None, *,
             model: nn.Module | None = None, inputs: Any = None) -> torch.Tensor:
        self._require_epoch("loss()")
        self._check_batch(logits, targets, indices)
        loss = cross_entropy(logits, targets)
        self._components = {"ce": loss.detach(), "total": loss.detach()}
        return loss
