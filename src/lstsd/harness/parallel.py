"""Several runs at once without fighting over the CPU (``lstsd compare/sweep --jobs N``).

Two training processes with the default thread count on 2 cores ran a ResNet-8 epoch in 80 s
instead of 2.3 s: their OpenMP threads spin against each other. So N runs at once each get
``cores // N`` threads (at least 1), set before torch starts its thread pools, in a fresh
``spawn`` process; with ``jobs=1`` the runs go one after another in this process. More jobs than
cores is refused: it would oversubscribe the machine.

A CPU run is deterministic for a given number of threads on one machine, but not across thread
counts (the kernels split their sums differently) nor across CPU types (PyTorch picks its kernels
by instruction set: a 164-epoch run differed by 0.3 points between an AVX2 and an AVX-512 CPU).
Runs made with ``--jobs 2`` on 2 cores (1 thread each) equal sequential runs made with
``--threads 1``, not those made with 2 threads. The thread count
is recorded in each run's ``results.json`` (``cost.threads``).

Example:
    >>> threads_per_job(jobs=1, cores=2), threads_per_job(jobs=2, cores=2), threads_per_job(jobs=3, cores=8)
    (2, 1, 2)
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

__all__ = ["RunRequest", "available_cores", "run_all", "threads_per_job"]


@dataclass(frozen=True)
class RunRequest:
    """One run to make: its resolved config (``TrainConfig.to_dict()``) and whether to resume it."""

    config: dict[str, Any]
    resume: bool = False


def available_cores() -> int:
    """Cores this process may use (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


def threads_per_job(jobs: int, cores: int | None = None) -> int:
    """Intra-op threads for each of ``jobs`` concurrent runs on ``cores`` cores: ``cores // jobs``, at least 1."""
    cores = available_cores() if cores is None else cores
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"--jobs must be an int >= 1, got {jobs!r}")
    if jobs > cores:
        raise ValueError(f"--jobs {jobs} is more than the {cores} cores of this machine: runs would fight over "
                         f"the CPU (tens of times slower) — use --jobs {cores} or fewer")
    return max(1, cores // jobs)


_ORPHANED = threading.Event()   # set in a pool worker whose parent process is gone


def _run_in_worker(request: RunRequest, threads: int) -> dict[str, Any]:
    import torch   # the pool's processes are spawned: set the threads before any work
    torch.set_num_threads(threads)
    from .config import TrainConfig
    from .trainer import Trainer
    try:
        return Trainer(TrainConfig.from_dict(request.config), log=None).fit(resume=request.resume)
    finally:
        if _ORPHANED.is_set():
            os._exit(1)   # stopped because the parent is gone: nobody is left to report to


def _init_worker(threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    # A pool started from a background shell inherits SIGINT ignored: make Ctrl-C stop a run again.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=_stop_when_orphaned, args=(os.getppid(),), daemon=True,
                     name="lstsd-parent-watch").start()


def _stop_when_orphaned(parent: int, poll_s: float = 1.0, grace_s: float = 30.0) -> None:
    """Stop this worker when the process that started it is gone (killed by SIGTERM or SIGKILL, which
    give it no chance to stop its pool): a run interrupted this way resumes from its last checkpoint,
    where a run left going would keep the cores busy, unseen, until it finished."""
    while os.getppid() == parent:
        time.sleep(poll_s)
    _ORPHANED.set()
    os.kill(os.getpid(), signal.SIGINT)   # KeyboardInterrupt in the run: it stops as on Ctrl-C
    time.sleep(grace_s)
    os._exit(1)   # idle, or the run did not stop in time


def run_all(requests: Sequence[RunRequest], *, jobs: int = 1, threads: int | None = None,
            on_done: Callable[[RunRequest, dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Make every run; return their results in the order of ``requests``.

    With ``jobs > 1`` the runs go to a pool of ``jobs`` spawned processes with ``threads``
    (default :func:`threads_per_job`) threads each; the first failure stops the pool and is
    raised. With ``jobs == 1`` they run here, with ``threads`` threads if given.
    ``on_done(request, results)`` is called as each run finishes (in this process).
    """
    auto = threads_per_job(jobs)
    if threads is not None and (not isinstance(threads, int) or threads < 1 or threads * jobs > available_cores()):
        raise ValueError(f"--threads {threads} × --jobs {jobs} is more than the {available_cores()} cores: use "
                         f"--threads {auto} or fewer")
    results: list[dict[str, Any] | None] = [None] * len(requests)
    if jobs == 1:
        import torch
        before = torch.get_num_threads()
        torch.set_num_threads(threads or before)
        try:
            for k, request in enumerate(requests):
                results[k] = _run_in_worker(request, threads or before)
                if on_done is not None:
                    on_done(request, results[k])
        finally:
            torch.set_num_threads(before)
        return results  # type: ignore[return-value]
    threads = threads or auto
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(_run_in_worker, request, threads): k for k, request in enumerate(requests)}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                k = futures[future]
                error = future.exception()
                if error is not None:
                    for other in pending:
                        other.cancel()
                    raise error
                results[k] = future.result()
                if on_done is not None:
                    on_done(requests[k], results[k])
    return results  # type: ignore[return-value]
