"""The examples run end to end, on tiny settings (they are documentation: they must not rot).

Each is started as a user would start it, in its own process with one thread; the full-size runs
and their numbers are in the README and docs/results.md.
"""

from __future__ import annotations

import ast
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
                          timeout=timeout, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def accuracies(out: str) -> dict[str, float]:
    """``{method: accuracy}`` from an example's closing table."""
    return {m: float(a) for m, a in re.findall(r"^(\w+)\s+([\d.]+)%", out, flags=re.M)}


def runs(out: str) -> dict[str, str]:
    """``{method: its part of the output}``: each method's run starts with a line ``name:``."""
    parts = re.split(r"^(\w+):$", out, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def named_numbers(text: str) -> dict[str, float]:
    """``{"ce": 0.5, "long": 0.1}`` from ``ce 0.5  long 0.1``."""
    return {k: float(v) for k, v in re.findall(r"(\w+) ([-\d.e]+)", text)}


def recorded(out: str) -> tuple[int, int, int]:
    """(long-term, short-term, training samples) from the line an LSTSD run ends with."""
    found = re.findall(r"soft targets recorded: long-term (\d+), short-term (\d+) of (\d+)", out)
    assert len(found) == 1, out
    return tuple(int(n) for n in found[0])


def assert_distills(parts: dict[str, float], where: str) -> None:
    """LSTSD's loss once its first mini-generation is over: both KL terms positive, and the total is
    cross-entropy + λ^L·long + λ^S·short with the examples' λ^L = 2.4, λ^S = 4.0 (as printed, rounded)."""
    assert parts["long"] > 0 and parts["short"] > 0, where
    assert parts["total"] == pytest.approx(parts["ce"] + 2.4 * parts["long"] + 4.0 * parts["short"], abs=0.01), where


def test_plain_loop():
    for method in ("lstsd", "vanilla"):
        out = run_example("plain_loop.py", "--epochs", "3", "--generation-epochs", "1", "--method", method)
        epochs = [(int(e), float(a), ast.literal_eval(parts)) for e, a, parts in
                  re.findall(r"^epoch\s+(\d+)\s+test accuracy\s+([\d.]+)%\s+last loss (\{.*\})$", out, flags=re.M)]
        assert [e for e, _, _ in epochs] == [0, 1, 2], out
        assert epochs[-1][1] >= 80, out        # 10 classes: chance is 10%; about 94% here
        if method == "vanilla":
            assert all(set(parts) == {"ce", "total"} for _, _, parts in epochs), out
            continue
        first, *distilled = [parts for _, _, parts in epochs]
        assert first["long"] == first["short"] == 0 and first["total"] == first["ce"], out   # E = 1: CE only
        for parts in distilled:
            assert_distills(parts, out)
        assert recorded(out) == (1257, 1257, 1257)   # 70% of the 1,797 digits; every one has both targets


@pytest.mark.slow
@pytest.mark.skipif(not _can(_fashion_mnist), reason="Fashion-MNIST or lightning not available here")
def test_lightning_example():
    out = run_example("lightning_fashion_mnist.py", "--epochs", "3", "--generation-epochs", "1", "--train-subset",
                      "512", "--batch-size", "32", "--val-size", "64", "--methods", "vanilla,lstsd")
    result = accuracies(out)
    assert set(result) == {"vanilla", "lstsd"}, out
    assert min(result.values()) >= 50, out    # 10 classes: chance is 10%; both reach about 75% here
    epochs = {name: [named_numbers(parts) for parts in re.findall(r"train loss: (.*)$", text, flags=re.M)]
              for name, text in runs(out).items()}
    assert len(epochs["vanilla"]) == len(epochs["lstsd"]) == 3, out
    assert all(set(parts) == {"ce", "total"} for parts in epochs["vanilla"]), out
    first, *distilled = epochs["lstsd"]
    assert first["long"] == first["short"] == 0, out
    for parts in distilled:                   # epoch means of the loss's parts
        assert_distills(parts, out)
    assert recorded(runs(out)["lstsd"]) == (512, 512, 512)


@pytest.mark.slow
@pytest.mark.skipif(not _can(_vader_and_minilm), reason="VADER data, MiniLM weights or transformers not available")
def test_hf_trainer_example(tmp_path: Path):
    # Enough training to beat chance clearly (two layers, 256 snippets; an untrained head scores about 55%),
    # and a second mini-generation in the last epoch.
    out = run_example("hf_trainer_minilm.py", "--epochs", "3", "--generation-epochs", "2", "--train-subset", "256",
                      "--test-size", "200", "--trainable-layers", "2", "--lr", "5e-4", "--max-length", "32",
                      "--methods", "vanilla,lstsd", "--output-dir", str(tmp_path))
    result = accuracies(out)
    assert set(result) == {"vanilla", "lstsd"}, out
    assert min(result.values()) >= 60, out    # 2 classes: chance is 50%; both reach about 66% here
    last_step = {name: named_numbers(re.findall(r"last step's loss: (.*)$", text, flags=re.M)[-1])
                 for name, text in runs(out).items()}
    assert set(last_step["vanilla"]) == {"ce", "total"}, out
    assert_distills(last_step["lstsd"], out)
    assert recorded(runs(out)["lstsd"]) == (256, 256, 256)
