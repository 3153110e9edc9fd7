"""Helpers shared by the tests that start processes (torchrun, mp.spawn, framework launchers)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable

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
