"""Data helpers of the core library: make a data set yield each sample's index.

LSTSD keeps one soft target per training sample, so every batch must say which samples it holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch.utils.data import Dataset


class IndexedDataset(Dataset):
    """Wrap a map-style data set so that each sample says its index: ``(x, y)`` pairs become
    ``(x, y, index)``; dict rows (the Hugging Face style, ``{"input_ids": ..., "label": ...}``) get
    the index under ``key`` (``"idx"``, replacing a column of that name: GLUE's own ``idx`` has gaps
    after ``select`` or ``filter``).

    The index is the sample's position in ``dataset``; the default collate function turns a
    batch of them into the int64 tensor that :meth:`lstsd.LSTSD.loss` expects (``batch["idx"]``
    for dict rows).

    Example:
        >>> import torch
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> images, labels = torch.randn(10, 1, 4, 4), torch.randint(0, 3, (10,))
        >>> train = IndexedDataset(TensorDataset(images, labels))
        >>> loader = DataLoader(train, batch_size=4, shuffle=False)
        >>> x, y, idx = next(iter(loader))
        >>> idx
        tensor([0, 1, 2, 3])
        >>> rows = IndexedDataset([{"input_ids": [1, 2], "label": 0}, {"input_ids": [3, 4], "label": 1}])
        >>> rows[1]
        {'input_ids': [3, 4], 'label': 1, 'idx': 1}
    """

    def __init__(self, dataset: Any, key: str = "idx") -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(f"IndexedDataset needs a map-style data set (with __getitem__ and __len__), "
                            f"got {type(dataset).__name__}; iterable data sets have no stable sample index")
        self.dataset = dataset
        self.key = key

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        if index < 0:
            index += len(self)
        item = self.dataset[index]
        if isinstance(item, Mapping):
            return {**item, self.key: index}
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"IndexedDataset expects the wrapped data set to return (x, y) pairs or dict rows, "
                             f"got {type(item).__name__} of length {len(item) if hasattr(item, '__len__') else '?'}")
        x, y = item
        return x, y, index
