"""An in-memory loader that yields ``(x, y, index)`` batches, stateless by epoch.

LSTSD keeps per-sample soft-target banks, so every batch carries the row index of each
sample in its split. The whole split lives on the target device; a batch is a gather.

Shuffling and augmentation depend only on ``(seed, epoch)``: call ``set_epoch(epoch)``
before each epoch (as with ``DistributedSampler``) and a run resumed at epoch ``k``
sees exactly the batches it would have seen, without saving any generator state.

Example:
    >>> import torch
    >>> from lstsd.harness.data import TensorSplit
    >>> split = TensorSplit(torch.randn(10, 1, 8, 8), torch.arange(10) % 2)
    >>> loader = IndexedTensorLoader(split, batch_size=4, seed=0)
    >>> loader.set_epoch(3)
    >>> [len(idx) for _, _, idx in loader]
    [4, 4, 2]
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch

from .splits import Features, TensorSplit

__all__ = ["IndexedTensorLoader", "epoch_seed"]

_PERMUTATION_STREAM = 0
_AUGMENTATION_STREAM = 1


def epoch_seed(seed: int, epoch: int, stream: int, rank: int = 0) -> int:
    """A 63-bit seed derived from ``(seed, epoch, stream[, rank])`` without collisions in practice.

    Uses numpy's ``SeedSequence`` hashing, so e.g. ``(0, 1)`` and ``(1, 0)`` differ. Rank 0 gets the
    seed of a single process.

    Example:
        >>> epoch_seed(0, 1, 0) != epoch_seed(1, 0, 0), epoch_seed(0, 1, 0) != epoch_seed(0, 1, 0, rank=1)
        (True, True)
    """
    entropy = [int(seed), int(epoch), int(stream)] + ([int(rank)] if rank else [])
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class IndexedTensorLoader:
    """Batches of ``(x, y, index)`` from a :class:`TensorSplit`, held once on ``device``.

    Args:
        split: the data; features are a tensor or a dict of tensors (sliced together).
        batch_size: samples per batch (>= 1).
        shuffle: draw a fresh permutation each epoch (from ``(seed, epoch)``).
        drop_last: drop the final incomplete batch.
        seed: base seed (>= 0) of the permutation and augmentation generators.
        device: where the data and the batches live (default: where the split is).
        transform: ``f(x, generator) -> x`` applied to each batch of tensor features
            (e.g. :func:`random_crop_flip`); receives the epoch's augmentation generator
            on ``device``. Not allowed with dict features.
        memory_format: memory format of 4-D feature tensors (e.g. ``torch.channels_last``).
        rank, world_size: under DDP, this process's share of every batch. The epoch's order is
            the single-process one (padded, as ``DistributedSampler`` does, by repeating its first
            samples to a multiple of ``world_size``); each global batch of ``batch_size`` samples is
            cut into ``world_size`` equal parts and rank r takes part r, so one step of all ranks
            covers the samples of one single-process step. ``batch_size`` must be a multiple of
            ``world_size``; ``len(loader)`` is the number of (global) steps.

    Iteration yields ``x`` (tensor or dict), ``y`` (int64) and ``index`` (int64 rows of
    the split), all on ``device``. Without ``set_epoch`` the last set epoch (initially
    0) is reused, so every pass repeats the same order: call ``set_epoch`` each epoch.

    Example:
        >>> from lstsd.harness.data import TensorSplit, random_crop_flip
        >>> split = TensorSplit(torch.randn(100, 1, 8, 8), torch.arange(100) % 10)
        >>> loader = IndexedTensorLoader(split, 32, transform=lambda x, g: random_crop_flip(x, generator=g))
        >>> for epoch in range(2):
        ...     loader.set_epoch(epoch)
        ...     for x, y, index in loader:
        ...         pass
        >>> x.shape, index.tolist() == sorted(index.tolist())   # the last batch: 100 = 3 × 32 + 4, shuffled
        (torch.Size([4, 1, 8, 8]), False)
    """

    def __init__(self, split: TensorSplit, batch_size: int, *, shuffle: bool = True, drop_last: bool = False,
                 seed: int = 0, device: torch.device | str | None = None,
                 transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                 memory_format: torch.memory_format = torch.contiguous_format, rank: int = 0,
                 world_size: int = 1) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int) and 0 <= rank < world_size):
            raise ValueError(f"rank must be in [0, world_size) and world_size >= 1, got rank={rank!r}, "
                             f"world_size={world_size!r}")
        if batch_size % world_size:
            raise ValueError(f"batch_size={batch_size} cannot be split evenly over {world_size} processes: use a "
                             f"multiple of {world_size} (batch_size is the global batch of one step)")
        if not isinstance(split, TensorSplit):
            raise TypeError(f"split must be a TensorSplit, got {type(split).__name__}")
        if len(split) == 0:
            raise ValueError("cannot build a loader over an empty split")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        if isinstance(split.features, dict):
            lengths = {k: v.shape[0] for k, v in split.features.items()}
            if len(set(lengths.values())) != 1 or next(iter(lengths.values())) != len(split):
                raise ValueError(f"dict features must all have {len(split)} rows, got {lengths}")
            if transform is not None:
                raise ValueError("transform applies to tensor features only, not to dict features")

        self.device = torch.device(device) if device is not None else split.labels.device
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.transform = transform
        self.memory_format = memory_format
        self._epoch = 0
        # Moved (and re-laid-out) once; batches are gathers from these tensors.
        self.features: Features = (
            {k: self._place(v) for k, v in split.features.items()}
            if isinstance(split.features, dict)
            else self._place(split.features)
        )
        self.labels = split.labels.to(self.device)

    def _place(self, tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.to(self.device)
        return tensor.contiguous(memory_format=self.memory_format) if tensor.ndim == 4 else tensor

    @property
    def epoch(self) -> int:
        """The epoch the next iteration will use."""
        return self._epoch

    @property
    def num_samples(self) -> int:
        """Number of samples in the split."""
        return int(self.labels.shape[0])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation and augmentation the next iteration uses."""
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}")
        self._epoch = epoch

    @property
    def _padded_samples(self) -> int:
        return -(-self.num_samples // self.world_size) * self.world_size

    def __len__(self) -> int:
        if self.drop_last:
            return self._padded_samples // self.batch_size
        return -(-self._padded_samples // self.batch_size)

    def _order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            order = torch.arange(self.num_samples)
        else:
            gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, _PERMUTATION_STREAM))
            order = torch.randperm(self.num_samples, generator=gen)
        if self._padded_samples > self.num_samples:   # DDP: repeat the first samples, as DistributedSampler
            order = torch.cat([order, order[:self._padded_samples - self.num_samples]])
        return order.to(self.device)

    def _augmentation_generator(self, epoch: int) -> torch.Generator:
        gen = torch.Generator(device=self.device)
        return gen.manual_seed(epoch_seed(self.seed, epoch, _AUGMENTATION_STREAM, self.rank))

    def __iter__(self) -> Iterator[tuple[Features, torch.Tensor, torch.Tensor]]:
        epoch = self._epoch
        order = self._order(epoch)
        aug_gen = self._augmentation_generator(epoch) if self.transform is not None else None
        stop = len(self) * self.batch_size if self.drop_last else self._padded_samples
        for start in range(0, stop, self.batch_size):
            index = order[start : start + self.batch_size]
            if self.world_size > 1:   # this rank's equal part of the global batch
                part = index.numel() // self.world_size
                index = index[self.rank * part : (self.rank + 1) * part]
            if isinstance(self.features, dict):
                x: Features = {k: v[index] for k, v in self.features.items()}
            else:
                x = self.features[index]
                if self.transform is not None and aug_gen is not None:   # there is a generator iff a transform
                    x = self.transform(x, aug_gen)
                if x.ndim == 4:
                    x = x.contiguous(memory_format=self.memory_format)
            yield x, self.labels[index], index
