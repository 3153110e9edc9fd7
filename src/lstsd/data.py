"""Data helpers of the core library: make a data set yield each sample's index.

LSTSD keeps one soft target per training sample, so every batch must say which samples it holds.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset


class IndexedDataset(Dataset):
    """Wrap a map-style data set of ``(x, y)`` pairs so that it yields ``(x, y, index)``.

    The index is the sample's position in ``dataset``; the default collate function turns a
    batch of them into the int64 tensor that :meth:`lstsd.LSTSD.loss` expects.

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> images, labels = torch.randn(10, 1, 4, 4), torch.randint(0, 3, (10,))
        >>> train = IndexedDataset(TensorDataset(images, labels))
        >>> loader = DataLoader(train, batch_size=4, shuffle=False)
        >>> x, y, idx = next(iter(loader))
        >>> idx
        tensor([0, 1, 2, 3])
    """

    def __init__(self, dataset: Any) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(f"IndexedDataset needs a map-style data set (with __getitem__ and __len__), "
                            f"got {type(dataset).__name__}; iterable data sets have no stable sample index")
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, Any, int]:
        if index < 0:
            index += len(self)
        item = self.dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"IndexedDataset expects the wrapped data set to return (x, y) pairs, "
                             f"got {type(item).__name__} of length {len(item) if hasattr(item, '__len__') else '?'}")
        x, y = item
        return x, y, index
