"""Per-sample banks that stay identical on every rank of a ``torch.distributed`` process group.

Under DDP each rank trains on its share of the epoch, but LSTSD reads a sample's targets on
whichever rank draws it next epoch, so every rank keeps the whole bank. Once per step the ranks
exchange what they are about to write (docs/decisions.md, "Scale: several processes and large
class counts"):

1. each rank packs its batch's sample indices and the rows to write (already in the bank's
   storage form, e.g. fp16) into one ``uint8`` tensor, padded to a capacity all ranks agreed on
   with index −1 (an uneven last batch);
2. one ``all_gather`` collective (``all_gather_single`` / ``all_gather_into_tensor``, or the list
   ``all_gather`` where a backend lacks them);
3. duplicates are resolved the same way on every rank: a ``DistributedSampler`` pads the epoch by
   repeating samples, so a sample may be drawn by two ranks in one step; the occurrence of the
   lowest rank (then the earliest position) is kept, and padding rows are dropped;
4. every rank writes the same unique rows with one vectorised write.

A method reads its batch's targets *before* the step's writes (its loss comes first), as in one
process. In a single process (or with no process group initialised) :class:`RowExchange` returns
its inputs unchanged and costs nothing.

Example:
    >>> exchange = RowExchange()                  # one process: the rows pass through
    >>> idx, (rows,) = exchange(torch.tensor([3, 1]), torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
    >>> idx.tolist()
    [3, 1]
"""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["RowExchange", "first_occurrences", "sum_over_processes", "world_size"]


def world_size(group: dist.ProcessGroup | None = None) -> int:
    """Processes in ``group`` (the default group if ``None``); 1 when torch.distributed is not in use."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


def sum_over_processes(tensor: torch.Tensor, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over the processes of ``group`` (in place, an all-reduce),
    or ``tensor`` as it is in one process. Every process of the group must call it.

    Example:
        >>> sum_over_processes(torch.tensor([1.0, 2.0]))   # one process
        tensor([1., 2.])
    """
    if world_size(group) > 1:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
    return tensor


def first_occurrences(indices: torch.Tensor) -> torch.Tensor:
    """Positions of the first occurrence of each distinct non-negative value of ``indices`` (−1 = padding).

    Vectorised (no Python loop over samples); the positions come back in ascending order of value.

    Example:
        >>> first_occurrences(torch.tensor([4, 2, 4, -1, 2, 7])).tolist()
        [1, 0, 5]
    """
    positions = torch.arange(indices.numel(), device=indices.device)
    valid = indices >= 0
    values, inverse = torch.unique(indices[valid], return_inverse=True)
    first = torch.full((values.numel(),), indices.numel(), dtype=torch.long, device=indices.device)
    return first.scatter_reduce_(0, inverse, positions[valid], reduce="amin")


def _as_bytes(t: torch.Tensor, rows: int) -> torch.Tensor:
    return t.contiguous().view(torch.uint8).reshape(rows, -1)


def _from_bytes(b: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return b.contiguous().view(like.dtype).reshape(b.shape[0], *like.shape[1:])


class RowExchange:
    """Gathers one step's ``(indices, rows...)`` from every rank in one collective, without duplicates.

    Args:
        group: the process group (``None``: the default group).

    Calling it returns ``(indices, rows)`` with the rows of every rank, each sample once; with one
    process it returns its inputs. All ranks must call it at the same steps, with batches of the
    same size except for a smaller last batch (what ``DistributedSampler`` with the same
    ``batch_size`` on every rank gives). The capacity (the largest batch) is agreed on by one extra
    ``all_reduce`` the first time; a later batch larger than that is refused with a clear error.
    """

    def __init__(self, group: dist.ProcessGroup | None = None) -> None:
        self.group = group
        self.capacity: int | None = None
        self.growable_capacity = 0

    @property
    def active(self) -> bool:
        return world_size(self.group) > 1

    def __call__(self, indices: torch.Tensor, *rows: torch.Tensor,
                 growable: bool = False) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Every rank's ``(indices, rows)``, each index once. ``growable`` (per-token rows, whose number
        changes from step to step): a step with more rows than the capacity agreed on so far repeats
        the collective with a larger one, on every rank alike, instead of being refused."""
        if not self.active:
            return indices, rows
        batch = indices.numel()
        for r in rows:
            if r.shape[0] != batch:
                raise ValueError(f"each row tensor must have one row per index ({batch}), got shape {tuple(r.shape)}")
        world = world_size(self.group)
        packed_rows = [_as_bytes(indices.long(), batch)] + [_as_bytes(r, batch) for r in rows]
        if growable:
            gathered = self._gather_growable(torch.cat(packed_rows, dim=1), world)
        else:
            capacity = self._capacity(batch, indices.device)
            packed = torch.full((capacity, sum(p.shape[1] for p in packed_rows)), 255, dtype=torch.uint8,
                                device=indices.device)        # index bytes of 255 read as −1: padding
            packed[:batch] = torch.cat(packed_rows, dim=1)
            gathered = torch.empty((world * capacity, packed.shape[1]), dtype=torch.uint8, device=packed.device)
            _all_gather(gathered, packed, self.group, world)

        columns = [p.shape[1] for p in packed_rows]
        parts = gathered.split(columns, dim=1)
        all_indices = _from_bytes(parts[0], indices.long())
        keep = first_occurrences(all_indices)
        return all_indices[keep], tuple(_from_bytes(p, r)[keep] for p, r in zip(parts[1:], rows))

    def _gather_growable(self, packed: torch.Tensor, world: int) -> torch.Tensor:
        """The packed rows of every rank (padding rows read as index −1), in one collective while the
        rows fit the capacity; a header row carries each rank's row count, so that when one rank's
        do not fit, every rank sees it and repeats the collective with room for them (1.25 × more)."""
        capacity = self.growable_capacity
        while True:
            block = torch.full((capacity + 1, packed.shape[1]), 255, dtype=torch.uint8, device=packed.device)
            block[0] = 0
            block[0, :8] = _as_bytes(torch.tensor([packed.shape[0]], dtype=torch.long, device=packed.device), 1)[0]
            fits = min(packed.shape[0], capacity)
            block[1:1 + fits] = packed[:fits]
            gathered = torch.empty((world * (capacity + 1), packed.shape[1]), dtype=torch.uint8, device=packed.device)
            _all_gather(gathered, block, self.group, world)
            headers = gathered[::capacity + 1, :8].contiguous().view(torch.long).reshape(world)
            largest = int(headers.max())
            if largest <= capacity:
                keep = torch.ones(gathered.shape[0], dtype=torch.bool, device=gathered.device)
                keep[::capacity + 1] = False                    # drop the header rows
                return gathered[keep]
            capacity = self.growable_capacity = max(largest, int(1.25 * largest))

    def _capacity(self, batch: int, device: torch.device) -> int:
        if self.capacity is None:
            size = torch.tensor([batch], dtype=torch.long, device=device)
            dist.all_reduce(size, op=dist.ReduceOp.MAX, group=self.group)
            self.capacity = int(size.item())
        if batch > self.capacity:
            raise ValueError(f"a batch of {batch} samples is larger than the first step's largest batch "
                             f"({self.capacity}) across ranks; every rank must use the same batch_size "
                             "(a DistributedSampler over the same data set gives that)")
        return self.capacity


def _all_gather(out: torch.Tensor, inp: torch.Tensor, group: dist.ProcessGroup | None, world: int) -> None:
    """``out`` ← the ``inp`` of every rank, stacked along dim 0: one collective."""
    gather = getattr(dist, "all_gather_single", None) or getattr(dist, "all_gather_into_tensor", None)
    if gather is not None:
        try:
            gather(out, inp, group=group)
            return
        except (RuntimeError, NotImplementedError) as err:   # a backend without the fused collective
            if "support" not in str(err).lower():
                raise
    dist.all_gather(list(out.chunk(world, dim=0)), inp, group=group)   # views of ``out``: written in place
