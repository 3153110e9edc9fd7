"""A config's text data set and model as a :class:`~lstsd.harness.task.Task` for the shared trainer.

``data_args`` of the config take ``max_length`` (tokens, default 64), ``min_freq`` (the CNN's
vocabulary), ``split_seed`` (the seed of the VADER train/test split, default 0: the same test
set for every run seed, so that runs compare on identical data) and the loader's own options.

The model's kind (:func:`lstsd.harness.registry.model_kind`, aliases such as ``cnn`` resolved)
picks the tokenisation: the text CNN gets word ids from a vocabulary of the training texts, a
transformer the ids of its own tokeniser.
"""

from __future__ import annotations

import dataclasses

from ..config import TrainConfig
from ..data import train_val_split
from ..registry import available_datasets, dataset_entry, model_kind
from ..task import Task
from . import encode_for_cnn, encode_for_transformer
from .models import available_text_models, build_text_model, pretrained_source


def build_text_task(cfg: TrainConfig) -> Task:
    """Load ``cfg.dataset`` (a text data set), tokenise it for ``cfg.model``, build the model."""
    entry = dataset_entry(cfg.dataset)
    if entry.kind != "text":
        raise ValueError(f"{cfg.dataset!r} is not a text data set; text data sets: "
                         f"{', '.join(available_datasets('text'))}")
    kind = model_kind(cfg.model)
    if kind == "causal_lm":
        raise ValueError(f"model {cfg.model!r} is a causal LM, for text-generation data sets (wordnet_definitions); "
                         f"the classification data set {cfg.dataset!r} needs: {', '.join(available_text_models())}")
    if kind == "vision":
        raise ValueError(f"model {cfg.model!r} is a vision model; the text data set {cfg.dataset!r} needs a text "
                         f"model: {', '.join(available_text_models())}")
    args = dict(cfg.data_args)
    max_length = int(args.pop("max_length", 64))
    min_freq = int(args.pop("min_freq", 1))
    split_seed = int(args.pop("split_seed", 0))
    text = entry.load(data_dir=cfg.data_dir, seed=split_seed, **args)
    text = text.with_train_subset(cfg.train_subset, cfg.seed)
    model_args = dict(cfg.model_args)
    if kind == "text_cnn":
        data, vocab = encode_for_cnn(text, max_length=max_length, min_freq=min_freq)
        model = build_text_model(cfg.model, num_classes=data.num_classes, vocab_size=len(vocab), **model_args)
    else:
        source = pretrained_source(cfg.model, model_args.get("pretrained"))
        data = encode_for_transformer(text, source, max_length=max_length)
        model = build_text_model(cfg.model, num_classes=data.num_classes, **model_args)
    if cfg.val_fraction > 0:
        train_idx, val_idx = train_val_split(data.train.labels, cfg.val_fraction, cfg.seed)
        data = dataclasses.replace(data, train=data.train.subset(train_idx), val=data.train.subset(val_idx))
    return Task(data=data, model=model, metrics=tuple(text.metrics))
