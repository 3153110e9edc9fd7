"""The optimizer and the paper's step-decay learning-rate schedule of a run's config.

Example:
    >>> from torch import nn
    >>> from lstsd.harness.config import TrainConfig
    >>> cfg = TrainConfig(lr=0.1, epochs=4, lr_milestones=[0.5], lr_gamma=0.1)
    >>> optimizer = build_optimizer(cfg, nn.Linear(2, 2))
    >>> schedule = step_decay_schedule(optimizer, cfg, steps_per_epoch=3)
    >>> for _ in range(6):
    ...     optimizer.step(); schedule.step()
    >>> round(optimizer.param_groups[0]["lr"], 6)           # ×0.1 after epoch 2 (step 6)
    0.01
"""

from __future__ import annotations

import torch
from torch import nn

from .config import TrainConfig

__all__ = ["build_optimizer", "step_decay_schedule"]


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """``cfg.optimizer`` (``sgd``, ``adam`` or ``adamw``) over the model's trainable parameters (all of them,
    except the frozen base weights of a LoRA model) with the config's settings."""
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=cfg.weight_decay)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def step_decay_schedule(optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                        steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """The paper's schedule, stepped per iteration: ×``lr_gamma`` at each milestone fraction.

    Milestones fall on epoch boundaries (``round(f · epochs)`` epochs).
    """
    milestones = sorted({round(f * cfg.epochs) * steps_per_epoch for f in cfg.lr_milestones} - {0})
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=cfg.lr_gamma)
