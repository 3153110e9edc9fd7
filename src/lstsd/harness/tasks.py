"""From a config to data + model + metrics: the one place that knows which data sets exist.

Vision data sets come from :mod:`lstsd.harness.data` and models from
:mod:`lstsd.harness.models`; text data sets (``vader_*``, ``glue_*``) from
:mod:`lstsd.harness.text`, which imports ``transformers`` only when a transformer is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .config import TrainConfig
from .data import DatasetSplits, available_datasets, load_dataset


@dataclass
class Task:
    """The data, the freshly initialised model, and the metrics reported (first = headline)."""

    data: DatasetSplits
    model: nn.Module
    metrics: tuple[str, ...] = ("accuracy",)


def is_text_dataset(name: str) -> bool:
    return name.startswith(("vader_", "glue_"))


def build_task(cfg: TrainConfig) -> Task:
    """Load ``cfg.dataset`` and build ``cfg.model`` for it."""
    if is_text_dataset(cfg.dataset):
        from .text.task import build_text_task
        return build_text_task(cfg)
    if cfg.dataset not in available_datasets():
        raise ValueError(f"unknown dataset {cfg.dataset!r}; available: {', '.join(available_datasets())}, "
                         "vader_movies, vader_tweets, vader_amazon, glue_rte, glue_mrpc, glue_sst2, glue_cola")
    from .models import build_model
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, train_subset=cfg.train_subset,
                        val_fraction=cfg.val_fraction, seed=cfg.seed, download=cfg.download, **cfg.data_args)
    model = build_model(cfg.model, num_classes=data.num_classes, in_channels=data.in_channels or 3,
                        **cfg.model_args)
    return Task(data=data, model=model, metrics=("accuracy",))
