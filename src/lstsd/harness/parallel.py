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

Stopping (Ctrl-C, SIGTERM, or SIGINT to this process alone): the workers are started with SIGINT
and SIGTERM ignored, so no signal breaks one off while it starts or waits for work; during a run
either signal stops that run as Ctrl-C does (the step abandoned, the last checkpoint kept). This
process, when stopped, cancels the runs not started, stops the ones going (it signals their
workers itself, so a signal sent to it alone stops them too) and waits for them before it
reports; their interruptions come back as results, with no traceback printed by a worker.

Example:
    >>> threads_per_job(jobs=1, cores=2), threads_per_job(jobs=2, cores=2), threads_per_job(jobs=3, cores=8)
    (2, 1, 2)
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
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
_RUNNING = threading.Event()    # set in a pool worker while it makes a run (and until a signal stops it)
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_POOL_STOPPED: Any = None       # in a pool worker: the parent's event "stop: start no more runs"


def _run_in_worker(request: RunRequest, threads: int) -> dict[str, Any]:
    import torch  # the pool's processes are spawned: set the threads before any work
    torch.set_num_threads(threads)
    from .config import TrainConfig
    from .trainer import Trainer
    _RUNNING.set()
    if _POOL_STOPPED is not None and _POOL_STOPPED.is_set():
        _RUNNING.clear()
        raise KeyboardInterrupt   # queued before the stop: never started (its folder is not even made)
    try:
        return Trainer(TrainConfig.from_dict(request.config), log=None).fit(resume=request.resume)
    finally:
        _RUNNING.clear()
        if _ORPHANED.is_set():
            os._exit(1)   # stopped because the parent is gone: nobody is left to report to


def _stop_the_run(signum: int, frame: Any) -> None:
    """A worker's SIGINT and SIGTERM: stop the run in progress as Ctrl-C does (the interruption goes
    back to the parent as the run's result); between runs, nothing (the parent stops the pool)."""
    if _RUNNING.is_set():
        _RUNNING.clear()   # once: a second signal must not break off the run's own clean-up
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        from .runtime import Interrupted
        raise Interrupted(signum)


def _init_worker(threads: int, stopped: Any = None) -> None:
    global _POOL_STOPPED
    _POOL_STOPPED = stopped
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    # Started with SIGINT and SIGTERM ignored (run_all), whatever the shell left them as: from now on
    # they stop a run in progress and nothing else.
    for s in _STOP_SIGNALS:
        signal.signal(s, _stop_the_run)
    threading.Thread(target=_stop_when_orphaned, args=(os.getppid(),), daemon=True,
                     name="lstsd-parent-watch").start()


def _stop_when_orphaned(parent: int, poll_s: float = 1.0, grace_s: float = 30.0) -> None:
    """Stop this worker when the process that started it is gone (killed by SIGTERM or SIGKILL, which
    give it no chance to stop its pool): a run interrupted this way resumes from its last checkpoint,
    where a run left going would keep the cores busy, unseen, until it finished."""
    while os.getppid() == parent:
        time.sleep(poll_s)
    _ORPHANED.set()
    if not _RUNNING.is_set():
        os._exit(1)   # idle: nothing to stop
    os.kill(os.getpid(), signal.SIGINT)   # KeyboardInterrupt in the run: it stops as on Ctrl-C
    time.sleep(grace_s)
    os._exit(1)   # the run did not stop in time


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """SIGINT and SIGTERM ignored while processes are started (they inherit that through ``exec``,
    and a blocked signal mask they do not), so a new worker gets none before it can handle them.
    Only for the moment the workers take to start; this process handles both again on leaving."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in _STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


def _stop_pool(pool: ProcessPoolExecutor, futures: dict[Any, int], stopped: Any) -> None:
    """Cancel the runs not started (``stopped``, an event the workers check before each run: the pool
    hands a worker its next run before it asks), stop the ones going (their workers get SIGINT: a run
    stops at its next step, keeping its last checkpoint), and wait for the workers to end."""
    from .runtime import hold_signals
    handlers = {s: signal.getsignal(s) for s in _STOP_SIGNALS}
    hold_signals()   # a second Ctrl-C must not break off the stopping, leaving runs going
    try:
        stopped.set()
        for future in futures:
            future.cancel()
        for process in list(getattr(pool, "_processes", {}).values()):
            try:
                os.kill(process.pid, signal.SIGINT)
            except (ProcessLookupError, AttributeError, TypeError):
                pass
        pool.shutdown(wait=True, cancel_futures=True)
    finally:
        for s, handler in handlers.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)


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
                made = results[k] = _run_in_worker(request, threads or before)
                if on_done is not None:
                    on_done(request, made)
        finally:
            torch.set_num_threads(before)
        return results  # type: ignore[return-value]  # every slot was filled by the loop
    threads = threads or auto
    context = multiprocessing.get_context("spawn")
    stopped = context.Event()
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker,
                               initargs=(threads, stopped))
    futures: dict[Any, int] = {}
    try:
        with _signals_ignored():   # the workers are started here (submit), ignoring the signals
            for k, request in enumerate(requests):
                futures[pool.submit(_run_in_worker, request, threads)] = k
        pending = set(futures)
        while pending:
            # With a timeout: a signal that the OS hands to one of the pool's threads sets Python's flag
            # but leaves this thread blocked in an untimed wait, so it would never be acted on.
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_EXCEPTION)
            for future in done:
                k = futures[future]
                error = future.exception()
                if error is not None:
                    raise error
                made = results[k] = future.result()
                if on_done is not None:
                    on_done(requests[k], made)
    except BaseException:
        _stop_pool(pool, futures, stopped)   # a failed run, or this process stopped: the other runs stop too
        raise
    pool.shutdown(wait=True)
    return results  # type: ignore[return-value]  # every future filled its slot, or this raised
