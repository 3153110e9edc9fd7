"""The examples run end to end, on tiny settings (they are documentation: they must not rot).

Each is started as a user would start it, in its own process with one thread; the full-size runs
and their numbers are in the README and docs/results.md.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _can(load) -> bool:
    try:
        load()
    except Exception:  # noqa: BLE001 - any missing piece (package, data, weights) skips
        return False
    return True


def _fashion_mnist() -> None:
    from lstsd.harness.data import load_dataset
    load_dataset("fashion_mnist", train_subset=10)


def _vader_and_minilm() -> None:
    import transformers  # noqa: F401
    from lstsd.harness.text import load_vader, minilm_path
    minilm_path()
    load_vader("movies", train_subset=10)


def run_example(name: str, *args: str, timeout: int = 600) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def accuracies(out: str) -> dict[str, float]:
    """``{method: accuracy}`` from an example's closing table."""
    return {m: float(a) for m, a in re.findall(r"^(\w+)\s+([\d.]+)%", out, flags=re.M)}


def test_plain_loop():
    for method in ("lstsd", "vanilla"):
        out = run_example("plain_loop.py", "--epochs", "3", "--generation-epochs", "1", "--method", method)
        assert "accuracy" in out.lower()


@pytest.mark.slow
@pytest.mark.skipif(not _can(_fashion_mnist), reason="Fashion-MNIST or lightning not available here")
def test_lightning_example():
    out = run_example("lightning_fashion_mnist.py", "--epochs", "2", "--generation-epochs", "1", "--train-subset",
                      "128", "--val-size", "64", "--methods", "vanilla,lstsd")
    result = accuracies(out)
    assert set(result) == {"vanilla", "lstsd"} and all(0 <= a <= 100 for a in result.values()), out


@pytest.mark.slow
@pytest.mark.skipif(not _can(_vader_and_minilm), reason="VADER data, MiniLM weights or transformers not available")
def test_hf_trainer_example(tmp_path: Path):
    out = run_example("hf_trainer_minilm.py", "--epochs", "2", "--generation-epochs", "1", "--train-subset", "32",
                      "--test-size", "32", "--trainable-layers", "1", "--methods", "vanilla,lstsd",
                      "--output-dir", str(tmp_path))
    result = accuracies(out)
    assert set(result) == {"vanilla", "lstsd"} and all(0 <= a <= 100 for a in result.values()), out
