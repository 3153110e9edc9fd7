"""The harness under torchrun: 2 gloo processes on the CPU train, checkpoint once per epoch (rank 0),
resume to the same final weights and banks as an uninterrupted 2-process run, and refuse to
resume with another number of processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lstsd.harness.checkpoint import load_checkpoint, previous_path
from processes import free_port

pytestmark = pytest.mark.slow

CONFIG = {"dataset": "digits", "train_subset": 300, "model": "resnet", "model_args": {"depth": 8, "width": 4},
          "method": "lstsd", "method_args": {"generation_epochs": 1}, "epochs": 3, "batch_size": 64,
          "eval_batch_size": 100, "progress": "none", "precision": "fp32"}


def torchrun(config: Path, *extra: str, processes: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = ([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}",
                "--master_port", str(free_port()), "-m", "lstsd.harness.cli"] if processes > 1
               else [sys.executable, "-m", "lstsd.harness.cli"])
    return subprocess.run(command + ["train", "--config", str(config), *extra], capture_output=True, text=True,
                          env=env, timeout=600)


def write_config(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "run_dir": str(tmp_path / name)}))
    return path


def test_two_processes_train_checkpoint_and_resume_exactly(tmp_path: Path):
    straight = write_config(tmp_path, "straight")
    done = torchrun(straight)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "straight"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.prev.pt", "checkpoint.pt", "config.yaml",
                                                   "metrics.jsonl", "results.json"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3          # rank 0 alone wrote it
    final = load_checkpoint(run / "checkpoint.pt")
    assert final["world_size"] == 2 and len(final["rng"]) == 2

    # A crash after epoch 2's checkpoint: what is left is that checkpoint. Resume under 2 processes.
    crashed = tmp_path / "crashed"
    shutil.copytree(run, crashed)
    os.replace(previous_path(crashed / "checkpoint.pt"), crashed / "checkpoint.pt")
    (crashed / "results.json").unlink()
    cfg = write_config(tmp_path, "crashed")
    done = torchrun(cfg, "--resume")
    assert done.returncode == 0, done.stderr[-3000:]
    resumed = load_checkpoint(crashed / "checkpoint.pt")
    assert resumed["epoch"] == final["epoch"] == 2
    for part in ("model", "method"):
        for key, value in final[part].items():
            if hasattr(value, "dtype"):
                assert (value == resumed[part][key]).all(), f"{part}.{key} differs after resume"
    assert any(k.endswith("bank.targets") for k in final["method"])

    # The same checkpoint in one process: refused with the command that fits.
    os.replace(previous_path(crashed / "checkpoint.pt"), crashed / "checkpoint.pt")
    done = torchrun(cfg, "--resume", processes=1)
    assert done.returncode != 0
    assert "written by 2 process(es)" in done.stderr and "--nproc_per_node=2" in done.stderr


def test_the_language_model_task_trains_under_two_processes_with_the_pretrained_pass(tmp_path: Path, monkeypatch):
    # The text-generation task (tiny random Llama, fake WordNet and probe sentences) under torchrun:
    # per-token banks exchanged between the ranks, the pass before training included.
    pytest.importorskip("transformers")
    from fakedata import write_vader, write_wordnet
    write_vader(tmp_path / "vader")
    config = tmp_path / "lm.yaml"
    config.write_text(yaml.safe_dump({
        "dataset": "wordnet_definitions", "data_dir": str(tmp_path / "vader"), "run_dir": str(tmp_path / "lm"),
        "data_args": {"train_size": 12, "heldout_size": 6, "max_words": 12, "probe_size": 4,
                      "probe_subset": "movies"},
        "model": "tiny-llama", "method": "lstsd",
        "method_args": {"generation_epochs": 1, "temperature": 1.0, "long_term_teacher": "pretrained"},
        "epochs": 2, "batch_size": 2, "eval_batch_size": 4, "optimizer": "adamw", "lr": 0.01, "weight_decay": 0.0,
        "lr_gamma": 1.0, "augment": False, "progress": "none", "precision": "fp32", "device": "cpu"}))
    monkeypatch.setenv("LSTSD_WORDNET", str(write_wordnet(tmp_path / "wordnet")))
    monkeypatch.setenv("LSTSD_CACHE", str(tmp_path / "cache"))
    done = torchrun(config)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [yaml.safe_load(line) for line in (tmp_path / "lm" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[0]["teacher_long_coverage"] == 100.0 and rows[1]["teacher_short_coverage"] == 100.0
    final = load_checkpoint(tmp_path / "lm" / "checkpoint.pt")
    assert final["world_size"] == 2 and final["initial_pass_seconds"] > 0
    counts = final["method"]["long_term_bank.counts"]
    assert bool((counts > 0).all())          # every example's answer tokens, from both ranks
