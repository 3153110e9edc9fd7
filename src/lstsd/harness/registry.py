"""The names the harness knows, in one place: data sets with their kind, models with theirs.

Data sets are registered by name with a kind and a loader, as methods are in
:mod:`lstsd.methods` (:func:`register_dataset`, :func:`available_datasets`, :func:`dataset_entry`):

* ``"image"``: image tensors, from :mod:`lstsd.harness.data` (Fashion-MNIST, CIFAR, digits);
* ``"text"``: raw strings, from :mod:`lstsd.harness.text` (the VADER sets ``vader_*`` and the
  GLUE tasks ``glue_*``), tokenised for the model by :func:`lstsd.harness.text.task.build_text_task`;
* ``"text_generation"``: instruction examples for a causal LM (``wordnet_definitions``), encoded by
  :func:`lstsd.harness.text.generation.build_generation_task`.

The built-in names are those the loaders accept (:func:`lstsd.harness.data.available_datasets`,
:func:`lstsd.harness.text.available_text_datasets`); they are not written out again anywhere.
Models: :func:`model_kind` says whether a name (text aliases such as ``cnn`` resolved) is a
vision model, a text CNN, a transformer or a causal LM (:mod:`lstsd.harness.text.lm`).
:func:`~lstsd.harness.tasks.build_task`, ``lstsd list``, :mod:`lstsd.harness.report` and the text task
builder ask this module.

Example:
    >>> available_datasets("text")[:4]
    ['vader_movies', 'vader_tweets', 'vader_amazon', 'vader_nyt']
    >>> is_text_dataset("glue_rte"), is_text_dataset("digits")
    (True, False)
    >>> model_kind("kim_cnn"), model_kind("minilm"), model_kind("resnet20")
    ('text_cnn', 'transformer', 'vision')
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import data, models
from .text import available_text_datasets, load_text_splits
from .text.lm import available_lm_models, lm_model_name
from .text.models import available_text_models, text_model_kind
from .text.wordnet import load_wordnet_definitions

__all__ = ["DATASET_KINDS", "MODEL_KINDS", "DatasetEntry", "available_datasets", "available_models",
           "dataset_entry", "is_text_dataset", "model_kind", "register_dataset", "unregister_dataset"]

DATASET_KINDS = ("image", "text", "text_generation")
MODEL_KINDS = ("vision", "text_cnn", "transformer", "causal_lm")


@dataclass(frozen=True)
class DatasetEntry:
    """A registered data set.

    ``load`` takes the run's data settings as keywords (``data_args`` last) and returns:

    * kind ``"image"``: a :class:`~lstsd.harness.data.DatasetSplits`, from
      ``load(data_dir=, train_subset=, val_fraction=, seed=, download=, **data_args)``
      (the keywords of :func:`lstsd.harness.data.load_dataset`);
    * kind ``"text"``: a :class:`~lstsd.harness.text.TextSplits` of raw strings, from
      ``load(data_dir=, seed=, **data_args)`` (``seed`` is the train/test split's seed); the text
      task builder takes the train subset, tokenises and carves the validation split;
    * kind ``"text_generation"``: a :class:`~lstsd.harness.text.wordnet.DefinitionSet` (training and
      held-out instruction examples, raw strings), from ``load(**data_args)`` less the probe's
      settings; :func:`lstsd.harness.text.generation.build_generation_task` encodes them.
    """

    name: str
    kind: str
    load: Callable[..., Any]


_DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(name: str, load: Callable[..., Any] | None = None, *, kind: str) -> Any:
    """Register the loader ``load`` of a data set of ``kind`` (``"image"`` or ``"text"``) as ``name``.

    Usable as a decorator (``@register_dataset("x", kind="image")``) or directly
    (``register_dataset("x", loader, kind="image")``). Re-registering a name raises ``ValueError``.
    See :class:`DatasetEntry` for what ``load`` is called with.

    Example:
        >>> from lstsd.harness.data import load_digits
        >>> @register_dataset("digits_demo", kind="image")
        ... def digits_demo(*, data_dir, train_subset, val_fraction, seed, download, **options):
        ...     return load_digits(**options)
        >>> "digits_demo" in available_datasets("image"), is_text_dataset("digits_demo")
        (True, False)
        >>> unregister_dataset("digits_demo")   # the example leaves the registry as it was
    """
    if kind not in DATASET_KINDS:
        raise ValueError(f"data set kind must be one of {DATASET_KINDS}, got {kind!r}")

    def add(f: Callable[..., Any]) -> Callable[..., Any]:
        if name in _DATASETS:
            raise ValueError(f"a data set named {name!r} is already registered")
        _DATASETS[name] = DatasetEntry(name, kind, f)
        return f
    return add if load is None else add(load)


def unregister_dataset(name: str) -> None:
    """Remove ``name`` from the registry (e.g. a data set registered by a test or an example)."""
    if name not in _DATASETS:
        raise ValueError(f"no data set named {name!r} is registered; registered: {', '.join(available_datasets())}")
    del _DATASETS[name]


def available_datasets(kind: str | None = None) -> list[str]:
    """Registered data set names (of ``kind`` only, if given), image sets first, in registration order.

    Example:
        >>> available_datasets("image")
        ['fashion_mnist', 'cifar10', 'cifar100', 'digits']
    """
    if kind is not None and kind not in DATASET_KINDS:
        raise ValueError(f"data set kind must be one of {DATASET_KINDS}, got {kind!r}")
    return [name for name, entry in _DATASETS.items() if kind is None or entry.kind == kind]


def dataset_entry(name: str) -> DatasetEntry:
    """The registered data set ``name``; ``ValueError`` listing every name when there is none.

    Example:
        >>> dataset_entry("glue_cola").kind
        'text'
    """
    entry = _DATASETS.get(name)
    if entry is None:
        raise ValueError(f"unknown dataset {name!r}; available: {', '.join(available_datasets())}")
    return entry


def is_text_dataset(name: str) -> bool:
    """Whether ``name`` is a registered text data set (``False`` for unknown names).

    Example:
        >>> is_text_dataset("vader_nyt"), is_text_dataset("cifar100"), is_text_dataset("no_such_set")
        (True, False, False)
    """
    entry = _DATASETS.get(name)
    return entry is not None and entry.kind == "text"


def available_models(kind: str | None = None) -> list[str]:
    """Model names (of ``kind`` only, if given: one of :data:`MODEL_KINDS`): vision models, then text models.

    Example:
        >>> available_models("transformer")
        ['bert', 'minilm']
    """
    if kind is not None and kind not in MODEL_KINDS:
        raise ValueError(f"model kind must be one of {MODEL_KINDS}, got {kind!r}")
    names = models.available_models() + available_text_models() + available_lm_models()
    return [name for name in names if kind is None or model_kind(name) == kind]


def model_kind(name: str) -> str:
    """``"vision"``, ``"text_cnn"``, ``"transformer"`` or ``"causal_lm"``: what the model ``name`` is, aliases resolved.

    Vision names are those of :func:`lstsd.harness.models.build_model` (case-insensitive), text
    names those of :func:`lstsd.harness.text.build_text_model` with its aliases (``cnn``,
    ``kim_cnn``, ``textcnn``, ``bert_base``, ``hf``, ``all_minilm_l6_v2``).

    Example:
        >>> model_kind("ResNet20"), model_kind("cnn"), model_kind("bert_base")
        ('vision', 'text_cnn', 'transformer')
    """
    if name.strip().lower() in models.available_models():
        return "vision"
    if lm_model_name(name) is not None:
        return "causal_lm"
    try:
        return text_model_kind(name)
    except ValueError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(available_models())}") from None


for _name in data.available_datasets():
    register_dataset(_name, functools.partial(data.load_dataset, _name), kind="image")
for _name in available_text_datasets():
    register_dataset(_name, functools.partial(load_text_splits, _name), kind="text")
del _name
register_dataset("wordnet_definitions", load_wordnet_definitions, kind="text_generation")
