"""What a task builder hands the trainer: the data, the freshly initialised model, the metrics.

A module of its own so that the builders (:func:`lstsd.harness.tasks.build_task` for image data
sets, :func:`lstsd.harness.text.task.build_text_task` for text ones) share it without importing
each other.

Example:
    >>> import torch
    >>> from lstsd.harness.data import load_dataset
    >>> task = Task(data=load_dataset("digits"), model=torch.nn.Linear(64, 10))
    >>> task.metrics
    ('accuracy',)
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .data import DatasetSplits

__all__ = ["Task"]


@dataclass
class Task:
    """The data, the freshly initialised model, and the metrics reported (first = headline)."""

    data: DatasetSplits
    model: nn.Module
    metrics: tuple[str, ...] = ("accuracy",)
