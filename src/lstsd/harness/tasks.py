"""From a config to data + model + metrics (a :class:`~lstsd.harness.task.Task`).

The data set's kind in :mod:`lstsd.harness.registry` picks the builder: image data sets are loaded
here, with a model from :mod:`lstsd.harness.models`; text data sets go to
:func:`lstsd.harness.text.task.build_text_task`, which imports ``transformers`` only when a
transformer is asked for; text-generation data sets to
:func:`lstsd.harness.text.generation.build_generation_task` (a causal LM).

Example:
    >>> from lstsd.harness.config import TrainConfig
    >>> cfg = TrainConfig(dataset="digits", model="resnet", model_args={"depth": 8, "width": 4})
    >>> task = build_task(cfg)
    >>> len(task.data.train), task.data.num_classes, task.metrics
    (1438, 10, ('accuracy',))
"""

from __future__ import annotations

from .config import TrainConfig
from .models import build_model
from .registry import dataset_entry
from .task import Task
from .text.generation import build_generation_task
from .text.task import build_text_task

__all__ = ["Task", "build_task"]


def build_task(cfg: TrainConfig) -> Task:
    """Load ``cfg.dataset`` and build ``cfg.model`` for it."""
    entry = dataset_entry(cfg.dataset)
    if entry.kind == "text":
        return build_text_task(cfg)
    if entry.kind == "text_generation":
        return build_generation_task(cfg)
    data = entry.load(data_dir=cfg.data_dir, train_subset=cfg.train_subset, val_fraction=cfg.val_fraction,
                      seed=cfg.seed, download=cfg.download, **cfg.data_args)
    model = build_model(cfg.model, num_classes=data.num_classes, in_channels=data.in_channels or 3,
                        **cfg.model_args)
    return Task(data=data, model=model, metrics=("accuracy",))
