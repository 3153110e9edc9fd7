"""Helpers shared by the tests that start processes (torchrun, mp.spawn, framework launchers)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

# What a rank prints when it aborts in gloo's teardown, at process exit, after its work is done.
TEARDOWN_ABORT = "terminate called without an active exception"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for MASTER_PORT)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], *, env: dict[str, str], timeout: float,
             finished: Callable[[subprocess.CompletedProcess], bool]) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc_per_node=2 ARGS`` on a free port, run once more (on a
    new port) if, and only if, it failed with gloo's teardown abort (:data:`TEARDOWN_ABORT`) after
    ``finished`` says its work was done.

    Why (docs/known_issues.md): a gloo worker thread frees the last collective's tensors while the
    interpreter is finalizing, and Python ends that thread inside a ``noexcept`` destructor. It is
    PyTorch's (pytorch/pytorch#190489; reduced to ``tests/gloo_teardown_repro.py``), and DDP keeps
    the threads alive past ``destroy_process_group()``, so a script of one's own (the DDP example,
    the HF Trainer) can hit it in about 1 run of 7 on a loaded 2-core machine. The harness ends its
    processes before finalization and needs no retry. Any other failure is returned as it is.
    """
    def run() -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                   "--master_port", str(free_port()), *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)

    done = run()
    if done.returncode != 0 and TEARDOWN_ABORT in done.stderr and finished(done):
        done = run()
    return done


@contextmanager
def gloo_rank(rank: int, port: int, world: int) -> Iterator[None]:
    """Inside an ``mp.spawn`` worker: one thread, rank ``rank`` of a gloo group of ``world`` on
    ``port``, torn down on the way out."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        yield
    finally:
        dist.destroy_process_group()


def spawn_ranks(worker: Callable[..., Any], out: Path, world: int) -> None:
    """``worker(rank, port, str(out))`` in ``world`` processes (one thread each), on a free port."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    mp.spawn(_then_exit, args=(worker, free_port(), str(out)), nprocs=world, join=True)


def _then_exit(rank: int, worker: Callable[..., Any], port: int, out: str) -> None:
    """Run ``worker``, then end the process without the interpreter's shutdown, where gloo's worker
    threads (kept alive by DDP and FSDP) can abort a finished run (docs/known_issues.md; seen here in
    2 of 12 runs of the FSDP test). A failure still raises, and mp.spawn reports it."""
    worker(rank, port, out)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
