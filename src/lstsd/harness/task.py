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

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .data import DatasetSplits
from .text.sequences import SequenceSplits

__all__ = ["Task"]


@dataclass
class Task:
    """The data, the freshly initialised model, and the metrics reported (first = headline).

    Classification tasks (images, text) hold :class:`~lstsd.harness.data.DatasetSplits` and are
    evaluated by the trainer from the predicted classes. The text-generation task holds
    :class:`~lstsd.harness.text.sequences.SequenceSplits` and its own ``evaluate(model, device,
    precision, eval_batch_size) -> {metric key: value}`` (:mod:`lstsd.harness.text.generation`),
    which the trainer calls after each evaluated epoch and once before training.
    """

    data: DatasetSplits | SequenceSplits
    model: nn.Module
    metrics: tuple[str, ...] = ("accuracy",)
    evaluate: Callable[[nn.Module, torch.device, str, int], dict[str, float]] | None = None
