"""Text tasks of the lstsd harness: data sets, tokenisation and models (paper Table 2).

The paper runs LSTSD on GLUE RTE, MRPC, SST-2 and CoLA with BERT-base and with a randomly
initialised Kim (2014) text CNN. This package provides:

* data as raw strings (:class:`TextSplits`): :func:`load_glue` (local GLUE TSVs, or HF
  ``datasets`` when online) and :func:`load_vader` (the VADER ground-truth sentiment sets,
  fetched offline-friendly from PyPI by :func:`fetch_vader`);
* tokenisation into the harness's :class:`~lstsd.harness.data.DatasetSplits` with dict
  features: :func:`encode_for_cnn` (train-only word vocabulary) and
  :func:`encode_for_transformer` (Hugging Face tokenisers, cached on disk);
* models taking the features dict and returning logits: :class:`TextCNN`,
  :class:`HFSequenceClassifier`, built by name with :func:`build_text_model`
  (``text_cnn``, ``bert``, ``minilm``).

Importing this package does not import ``transformers``; that happens only when a
tokeniser or transformer model is built.

Example (a toy data set; ``load_vader("movies")`` gives a real one once ``lstsd data fetch vader``
has run):
    >>> import torch
    >>> from lstsd.harness.text import TextSplits, build_text_model, encode_for_cnn
    >>> ts = TextSplits("toy", ["a good film", "a bad film", "good", "bad"], torch.tensor([1, 0, 1, 0]),
    ...                 ["a good one"], torch.tensor([1]), num_classes=2)
    >>> ds, vocab = encode_for_cnn(ts, max_length=8)
    >>> model = build_text_model("text_cnn", num_classes=2, vocab_size=len(vocab))
    >>> model(ds.train.features).shape
    torch.Size([4, 2])
"""

from __future__ import annotations

import os
from typing import Any

from .glue import GLUE_TASKS, available_glue_tasks, load_glue, read_glue_tsv
from .models import (
    HFSequenceClassifier,
    TextCNN,
    available_text_models,
    build_text_model,
    pretrained_source,
)
from .tokenize import (
    TextSplits,
    Vocab,
    build_vocab,
    encode_for_cnn,
    encode_for_transformer,
    load_tokenizer,
    minilm_path,
    word_tokenize,
)
from .vader import VADER_FILES, fetch_vader, load_vader, read_vader_file, vader_dir

__all__ = [
    "GLUE_TASKS",
    "VADER_FILES",
    "HFSequenceClassifier",
    "TextCNN",
    "TextSplits",
    "Vocab",
    "available_glue_tasks",
    "available_text_datasets",
    "available_text_models",
    "build_text_model",
    "build_vocab",
    "encode_for_cnn",
    "encode_for_transformer",
    "fetch_vader",
    "load_glue",
    "load_text_splits",
    "load_tokenizer",
    "load_vader",
    "minilm_path",
    "pretrained_source",
    "read_glue_tsv",
    "read_vader_file",
    "vader_dir",
    "word_tokenize",
]


def available_text_datasets() -> list[str]:
    """Names accepted by :func:`load_text_splits` (registered as text data sets in :mod:`lstsd.harness.registry`).

    Example:
        >>> available_text_datasets()
        ['vader_movies', 'vader_tweets', 'vader_amazon', 'vader_nyt', 'glue_rte', 'glue_mrpc', 'glue_sst2', 'glue_cola']
    """
    return [f"vader_{k}" for k in VADER_FILES] + [f"glue_{k}" for k in GLUE_TASKS]


def load_text_splits(name: str, *, data_dir: str | os.PathLike | None = None, seed: int = 0,
                     train_subset: int | float | None = None, **kwargs: Any) -> TextSplits:
    """Load a text data set by name: ``vader_<subset>`` or ``glue_<task>`` (see :func:`available_text_datasets`).

    ``kwargs`` go to :func:`load_vader` (``test_fraction``) or :func:`load_glue` (``source``).

    Example (skipped: needs the VADER files, from ``lstsd data fetch vader``):
        >>> ts = load_text_splits("vader_tweets", seed=1, train_subset=500)   # doctest: +SKIP
        >>> len(ts.train_texts)                                              # doctest: +SKIP
        500
    """
    key = name.lower().replace("-", "_")
    family, _, sub = key.partition("_")
    if family == "vader" and sub in VADER_FILES:
        return load_vader(sub, data_dir=data_dir, seed=seed, train_subset=train_subset, **kwargs)
    if family == "glue" and sub.replace("_", "") in GLUE_TASKS:
        return load_glue(sub, data_dir=data_dir, seed=seed, train_subset=train_subset, **kwargs)
    raise ValueError(f"unknown text data set {name!r}; available: {', '.join(available_text_datasets())}")
