"""The harness's data layer: in-memory tensor data sets, subsets/splits, augmentation, loader.

No torchvision: data sets are read from their original files into tensors.

Example:
    >>> from lstsd.harness.data import load_dataset, IndexedTensorLoader
    >>> ds = load_dataset("digits", train_subset=0.5, val_fraction=0.1, seed=0)
    >>> len(ds.train), len(ds.val), len(ds.test)
    (647, 72, 359)
    >>> loader = IndexedTensorLoader(ds.train, batch_size=64, seed=0)
    >>> x, y, index = next(iter(loader))
    >>> x.shape
    torch.Size([64, 1, 8, 8])
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

from .augment import random_crop_flip
from .cifar import load_cifar10, load_cifar100
from .digits import load_digits
from .fashion_mnist import load_fashion_mnist, read_idx
from .loader import IndexedTensorLoader
from .splits import DatasetSplits, TensorSplit, stratified_subset, train_val_split

__all__ = [
    "DatasetSplits",
    "IndexedTensorLoader",
    "TensorSplit",
    "available_datasets",
    "load_cifar10",
    "load_cifar100",
    "load_dataset",
    "load_digits",
    "load_fashion_mnist",
    "random_crop_flip",
    "read_idx",
    "stratified_subset",
    "train_val_split",
]


def _digits(data_dir: str | os.PathLike | None, download: bool, **kwargs: Any) -> DatasetSplits:
    del data_dir, download  # bundled with scikit-learn
    return load_digits(**kwargs)


_LOADERS: dict[str, Callable[..., DatasetSplits]] = {
    "fashion_mnist": lambda data_dir, download, **kw: load_fashion_mnist(data_dir, download=download, **kw),
    "cifar10": lambda data_dir, download, **kw: load_cifar10(data_dir, download=download, **kw),
    "cifar100": lambda data_dir, download, **kw: load_cifar100(data_dir, download=download, **kw),
    "digits": _digits,
}


def available_datasets() -> list[str]:
    """Names accepted by :func:`load_dataset`: the image data sets.

    Every data set of the harness, text ones included, is in :mod:`lstsd.harness.registry`.

    Example:
        >>> available_datasets()
        ['fashion_mnist', 'cifar10', 'cifar100', 'digits']
    """
    return list(_LOADERS)


def load_dataset(name: str, *, data_dir: str | os.PathLike | None = None, train_subset: int | float | None = None,
                 val_fraction: float = 0.0, seed: int = 0, download: bool = False,
                 **loader_kwargs: Any) -> DatasetSplits:
    """Load a data set by name, optionally subsample its train split and carve a validation split.

    Args:
        name: one of :func:`available_datasets` (``-`` is accepted for ``_``, case-insensitive).
        data_dir: folder searched first for the data files (``--data-dir``).
        train_subset: keep a seeded stratified subset of the train split: a count (int)
            or a fraction in (0, 1] (float). Taken before the validation split.
        val_fraction: fraction in [0, 1) of the (possibly subset) train split moved to a
            stratified validation split; 0 leaves ``val`` as ``None``.
        seed: seed of the subset and validation draws (same seed, same indices).
        download: fetch missing files when online (Fashion-MNIST, CIFAR).
        **loader_kwargs: passed to the data set's own loader, e.g. ``verify_checksums=False``
            (:func:`load_fashion_mnist`, :func:`load_cifar10`, :func:`load_cifar100`) or
            ``test_fraction`` / ``split_seed`` (:func:`load_digits`).

    Example:
        >>> ds = load_dataset("digits", train_subset=200, seed=1)
        >>> len(ds.train), ds.num_classes, ds.image_size
        (200, 10, 8)
    """
    key = name.lower().replace("-", "_")
    if key not in _LOADERS:
        raise ValueError(f"unknown data set {name!r}; available: {', '.join(available_datasets())}")
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ds = _LOADERS[key](data_dir, download, **loader_kwargs)
    train, val = ds.train, None
    if train_subset is not None:
        train = train.subset(stratified_subset(train.labels, train_subset, seed))
    if val_fraction > 0:
        train_idx, val_idx = train_val_split(train.labels, val_fraction, seed)
        train, val = train.subset(train_idx), train.subset(val_idx)
    return dataclasses.replace(ds, train=train, val=val)
