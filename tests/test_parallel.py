"""``--jobs``: runs in parallel processes with cores // jobs threads each give the same results as
the same runs made one after another with that many threads (CPU runs are deterministic for a
given thread count), and never oversubscribe the machine."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lstsd.harness.checkpoint import load_checkpoint
from lstsd.harness.config import TrainConfig
from lstsd.harness.parallel import RunRequest, available_cores, run_all, threads_per_job

BASE = dict(dataset="digits", train_subset=120, model="resnet", model_args={"depth": 8, "width": 4},
            method="lstsd", method_args={"generation_epochs": 1}, epochs=2, batch_size=40, progress="none")


def requests(tmp_path: Path, tag: str) -> list[RunRequest]:
    return [RunRequest(TrainConfig.from_dict({**BASE, "seed": s, "run_dir": str(tmp_path / f"{tag}{s}")}).to_dict())
            for s in (0, 1)]


def test_threads_per_job_divides_the_cores_and_refuses_oversubscription():
    assert threads_per_job(1, cores=4) == 4 and threads_per_job(2, cores=4) == 2 and threads_per_job(3, cores=4) == 1
    with pytest.raises(ValueError, match="more than the 2 cores"):
        threads_per_job(3, cores=2)
    with pytest.raises(ValueError, match="--jobs must be"):
        threads_per_job(0, cores=2)


@pytest.mark.slow
@pytest.mark.skipif(available_cores() < 2, reason="needs 2 cores to run 2 jobs")
def test_parallel_runs_equal_sequential_runs_with_the_same_thread_count(tmp_path):
    parallel = run_all(requests(tmp_path, "par"), jobs=2)
    sequential = run_all(requests(tmp_path, "seq"), jobs=1, threads=threads_per_job(2))
    assert [r["cost"]["threads"] for r in parallel] == [threads_per_job(2)] * 2
    assert [r["cost"]["threads"] for r in sequential] == [threads_per_job(2)] * 2
    assert [r["final"] for r in parallel] == [r["final"] for r in sequential]
    for s in (0, 1):
        a, b = (load_checkpoint(tmp_path / f"{tag}{s}" / "checkpoint.pt") for tag in ("par", "seq"))
        assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        assert all(torch.equal(a["method"][k], b["method"][k]) for k in a["method"] if "bank" in k)


def test_a_failing_run_is_raised(tmp_path):
    bad = [RunRequest({**requests(tmp_path, "x")[0].config, "method_args": {"generation_epochs": 0}})]
    with pytest.raises(ValueError, match="generation_epochs"):
        run_all(bad, jobs=1)


ORPHAN_PARENT = '''
import multiprocessing, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from lstsd.harness.config import TrainConfig
from lstsd.harness.parallel import RunRequest, _init_worker, _run_in_worker
if __name__ == "__main__":
    config = TrainConfig.from_dict({**%r, "epochs": 100000, "seed": 0, "run_dir": sys.argv[1]}).to_dict()
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
                               initargs=(1,))
    print(pool.submit(os.getpid).result(), flush=True)
    pool.submit(_run_in_worker, RunRequest(config), 1)
    time.sleep(600)
'''


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").is_file() or Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "getppid") or sys.platform != "linux", reason="Linux process semantics")
def test_a_run_stops_when_the_process_that_started_it_is_killed(tmp_path):
    """SIGKILL (or SIGTERM) to `lstsd compare --jobs N` gives it no chance to stop its pool: the
    workers notice their parent is gone, stop their runs (keeping the last checkpoint) and exit."""
    script = tmp_path / "parent.py"
    script.write_text(ORPHAN_PARENT % (BASE,))
    run_dir = tmp_path / "run"
    parent = subprocess.Popen([sys.executable, str(script), str(run_dir)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        worker = int(parent.stdout.readline())
        deadline = time.monotonic() + 120
        while not (run_dir / "checkpoint.pt").is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (run_dir / "checkpoint.pt").is_file(), "the run never saved a checkpoint"
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 20
        while _alive(worker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(worker), "the worker kept running after its parent was killed"
    finally:
        parent.kill()
    load_checkpoint(run_dir / "checkpoint.pt")   # the last checkpoint is intact
