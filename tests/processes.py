"""Helpers shared by the tests that start processes (torchrun, mp.spawn, framework launchers)."""

from __future__ import annotations

import socket
import subprocess
import sys
from typing import Callable

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

    Known, not yet explained: on one development machine a rank now and then aborts at exit
    after its last line (3 of 3 clean-clone ``make test`` runs hit it in one torchrun test or
    another; about 1 direct run of 20). Any other failure is returned as it is.
    """
    def run() -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                   "--master_port", str(free_port()), *args]
        return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)

    done = run()
    if done.returncode != 0 and TEARDOWN_ABORT in done.stderr and finished(done):
        done = run()
    return done
