"""The harness under ``torchrun``: which process this is, its device, and the few collectives the
trainer needs (PyTorch's own DDP does the gradients; :mod:`lstsd.distributed` keeps the banks).

``torchrun --nproc_per_node=N -m lstsd.harness.cli train ...`` sets ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK``; :func:`init_processes` starts the process group from them: nccl when the run is on
CUDA (each process on ``cuda:LOCAL_RANK``), gloo on the CPU. Started any other way, it is one process.

When a process of the run dies (killed, crashed, out of memory), the others' next collective fails;
:func:`lost_peer` tells that failure from other errors, so the trainer can say what happened and how
to resume. :func:`first_to_report` lets one process, not every one, print an error.

Example:
    >>> procs = Processes()            # a single process: every collective is the identity
    >>> procs.main, procs.sum(torch.tensor([2.0])).item(), procs.gather_objects("x")
    (True, 2.0, ['x'])
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..distributed import sum_over_processes

__all__ = ["Processes", "first_to_report", "init_processes", "lost_peer", "peer_failure"]

# What gloo (and the TCP store) say when the process at the other end of a connection is gone.
_LOST_PEER = ("Connection closed by peer", "Connection reset by peer", "remote worker crashing", "Broken pipe",
              "pair closure", "Connection refused")


@dataclass(frozen=True)
class Processes:
    """This process's place among the run's processes (``world_size`` 1: a single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes logs, metrics and checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum of ``tensor`` over all processes (in place under DDP)."""
        return sum_over_processes(tensor)

    def gather_objects(self, obj: Any) -> list[Any]:
        """``[obj of rank 0, obj of rank 1, ...]`` on every process."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def gather_rows(self, rows: torch.Tensor, total: int) -> torch.Tensor:
        """Every process's ``rows`` (its contiguous share of ``total`` rows, see :meth:`share`), in
        order, on every process: one collective, padded to equal shapes."""
        if not self.distributed:
            return rows
        per = -(-total // self.world_size)
        padded = rows.new_zeros((per, *rows.shape[1:]))
        padded[:rows.shape[0]] = rows
        out = rows.new_empty((per * self.world_size, *rows.shape[1:]))
        dist.all_gather(list(out.chunk(self.world_size)), padded)
        return out[:total]

    def share(self, total: int) -> slice:
        """This process's contiguous share of ``total`` items (the last ones may get fewer)."""
        per = -(-total // self.world_size)
        return slice(min(self.rank * per, total), min((self.rank + 1) * per, total))


def init_processes(device: str = "auto") -> tuple[Processes, str]:
    """Join the process group that ``torchrun`` describes (if any); return it and the device name
    this process should use (``cuda:LOCAL_RANK`` for CUDA runs)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1 and not (dist.is_available() and dist.is_initialized()):
        return Processes(), device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        device = f"cuda:{local_rank}"
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
        # Every process has finished joining before any goes on: one that fails at once (its data
        # missing) would otherwise close its connections while another is still making them, and
        # that one dies with gloo's "Connection closed by peer" traceback instead of its own error.
        dist.barrier()
    return Processes(dist.get_rank(), dist.get_world_size(), local_rank), device


def lost_peer(err: BaseException) -> bool:
    """Whether ``err`` (raised by a collective) means another process of the run is gone.

    Example:
        >>> lost_peer(RuntimeError("[pair.cc:553] Connection closed by peer [127.0.0.1]:4258. This is typically ..."))
        True
        >>> lost_peer(RuntimeError("CUDA out of memory"))
        False
    """
    network_error = getattr(dist, "DistNetworkError", None)
    if network_error is not None and isinstance(err, network_error):
        return True
    return isinstance(err, RuntimeError) and any(words in str(err) for words in _LOST_PEER)


def peer_failure(err: BaseException) -> str:
    """The part of a lost-peer error worth quoting: ``Connection closed by peer [127.0.0.1]:4258``.

    Example:
        >>> peer_failure(RuntimeError("[../gloo/pair.cc:553] Connection closed by peer [127.0.0.1]:4258. This is ..."))
        'Connection closed by peer [127.0.0.1]:4258'
    """
    text = str(err)
    for words in _LOST_PEER:
        found = re.search(re.escape(words) + r"(?: \[[^\]]*\]:\d+)?", text)
        if found:
            return found.group(0)
    return text.splitlines()[0][:160] if text else type(err).__name__


def first_to_report() -> bool:
    """Whether this process should print an error: always in a single process; under ``torchrun``,
    once per run — the first process to ask (counted in the run's store, which outlives any one
    process), or rank 0 before the process group exists (then every process meets the same checks)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return True
    if not (dist.is_available() and dist.is_initialized()):
        return int(os.environ.get("RANK", "0")) == 0
    try:
        store = dist.distributed_c10d._get_default_store()
        return int(store.add("lstsd/errors_reported", 1)) == 1
    except Exception:  # noqa: BLE001 - the store is gone too: better twice than never
        return True
