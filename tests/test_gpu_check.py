"""benchmarks/gpu_check.sh, the prepared GPU check, in its CPU mode: on a machine without CUDA it says
so in one line, runs the CPU-equivalent quick versions of every part (the cuda tests skipped, the
benchmarks at tiny sizes), writes one markdown file with every section and a log, and exits 0; a part
that cannot run is recorded in the markdown and makes the exit status 1."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"
SECTIONS = ["# GPU check", "## Versions", "## Tests that need CUDA", "## Training-step cost: ResNet-20, C = 100",
            "## The method's own cost at CIFAR-100 shapes", "## The method's own cost at ImageNet-1k shapes",
            "## Per-token banks", "## Parts"]

pytestmark = pytest.mark.skipif(torch.cuda.is_available(),
                                reason="a GPU is here: the script would run the GPU check (make gpu-check)")


def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("OUT", None)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=ROOT)


def test_without_cuda_it_says_so_runs_the_quick_cpu_versions_and_exits_0(tmp_path: Path):
    out = tmp_path / "out"
    done = run("--quick", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.strip().splitlines()
    assert sum("No CUDA" in line for line in lines) == 1, done.stdout
    assert lines[-1].startswith("gpu-check: ") and "6/6 parts ok" in lines[-1], lines[-1]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.log", "gpu_check.md"]
    md = (out / "gpu_check.md").read_text()
    for section in SECTIONS:
        assert section in md, section
    assert "**No CUDA**" in md
    # The cuda tests were collected and skipped; every benchmark printed its table.
    assert "test_two_ranks_on_one_gpu_keep_identical_banks[nccl] | skipped" in md
    assert "Tests: 0 passed" in md and " 0 failed" in md
    for table in ("| method | extra forwards | median ms/step |", "| loss | median ms/step | added to a step |",
                  "| loss | ms per step | added to the model's own loss |"):
        assert table in md, table
    assert "**failed**" not in md and "timed out" not in md
    assert "----- step_cost: stdout" in (out / "gpu_check.log").read_text()


def test_a_part_that_cannot_run_is_recorded_and_the_status_is_1(tmp_path: Path):
    done = run("--budget", "0", "--only", "step_cost", str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    md = (tmp_path / "gpu_check.md").read_text()
    assert "| step_cost | not run: the budget of 0 s is spent |" in md
    assert "## Tests that need CUDA" not in md          # --only: the other parts are left out
    assert done.stdout.strip().splitlines()[-1].startswith("gpu-check: ")
