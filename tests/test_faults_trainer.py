"""Faults inside a run (issue: trustworthy runs): non-finite losses, torn / truncated / altered
checkpoints, a full disk, temporary files of a killed write. Each test fails on a trainer that
writes a NaN into a bank, loads a corrupt checkpoint silently, or loses the previous one."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

from lstsd.harness import checkpoint as ckpt
from lstsd.harness.config import TrainConfig
from lstsd.harness.errors import DivergedError, RunError
from lstsd.harness.trainer import Trainer

TINY = dict(dataset="digits", train_subset=160, model="resnet", model_args={"depth": 8, "width": 4},
            method="lstsd", method_args={"generation_epochs": 1}, epochs=3, batch_size=32, lr=0.1,
            eval_batch_size=500, progress="none", augment=False, precision="fp32")


def tiny(tmp_path: Path, **changes) -> TrainConfig:
    return TrainConfig.from_dict({**TINY, "run_dir": str(tmp_path / "run"), **changes})


def banks(state: dict) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state["method"].items() if "bank" in k}


# ----------------------------------------------------------------------------- non-finite losses
def test_nan_logits_stop_the_run_naming_epoch_and_step_and_never_reach_a_bank(tmp_path):
    trainer = Trainer(tiny(tmp_path), log=None)
    forward = trainer.model.forward
    calls = {"n": 0}

    def poisoned(x):   # the 3rd training step of epoch 2 (5 steps per epoch) gives NaN logits
        calls["n"] += trainer.model.training
        out = forward(x)
        return out * float("nan") if calls["n"] == 5 + 3 else out
    trainer.model.forward = poisoned
    with pytest.raises(DivergedError, match=r"epoch 2/3, step 3/5.*nothing non-finite was written.*"
                                            r"checkpoint of epoch 1 is kept"):
        trainer.fit()
    for name, bank in trainer.method.named_buffers():
        assert torch.isfinite(bank.float()).all(), f"{name} holds a non-finite value"
    state = ckpt.load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert state["epoch"] == 0                   # the last good checkpoint: end of epoch 1
    assert all(torch.isfinite(v.float()).all() for v in banks(state).values())


def test_a_diverging_learning_rate_ends_with_a_clear_error(tmp_path):
    with pytest.raises(DivergedError, match="lower the learning rate"):
        Trainer(tiny(tmp_path, lr=1e12, method_args={"generation_epochs": 1}), log=None).fit()


# ----------------------------------------------------------------------------- checkpoints
def _run_two_epochs(tmp_path: Path) -> Path:
    Trainer(tiny(tmp_path, epochs=2), log=None).fit()
    return tmp_path / "run" / "checkpoint.pt"


def test_checkpoint_digest_detects_a_flipped_byte_in_the_tensor_data(tmp_path):
    path = _run_two_epochs(tmp_path)
    state = ckpt.load_checkpoint(path)
    data = bytearray(path.read_bytes())
    needle = state["model"]["fc.weight"].numpy().tobytes()[:16]     # a tensor's bytes in the file
    at = bytes(data).find(needle)
    assert at > 0
    data[at + 3] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(ckpt.CorruptCheckpointError, match="checkpoint.pt does not match its digest"):
        ckpt.load_checkpoint(path)


@pytest.mark.parametrize("damage", ["truncate", "empty", "garbage"])
def test_torn_or_foreign_checkpoints_give_a_clear_error_naming_the_file(tmp_path, damage):
    path = _run_two_epochs(tmp_path)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "empty": b"", "garbage": b"not a checkpoint" * 10}[damage])
    with pytest.raises(ckpt.CorruptCheckpointError, match=str(path)):
        ckpt.load_checkpoint(path)


def test_resume_falls_back_to_the_previous_checkpoint_and_finishes(tmp_path):
    cfg = tiny(tmp_path)
    trainer = Trainer(cfg, log=None)
    trainer.fit()
    path = tmp_path / "run" / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:1000])                 # the last write was torn
    (tmp_path / "run" / "results.json").unlink()
    messages: list[str] = []
    resumed = Trainer(cfg, log=messages.append)
    resumed.fit(resume=True)
    assert any("resuming from checkpoint.prev.pt (epoch 2)" in m for m in messages)
    assert ckpt.load_checkpoint(path)["epoch"] == 2


def test_both_checkpoints_unreadable_says_the_state_is_lost(tmp_path):
    path = _run_two_epochs(tmp_path)
    for p in (path, ckpt.previous_path(path)):
        p.write_bytes(b"\x00" * 64)
    with pytest.raises(ckpt.CorruptCheckpointError, match="start it again.*or restore a copy"):
        Trainer(tiny(tmp_path, epochs=2), log=None).fit(resume=True)


def test_disk_full_while_saving_keeps_the_previous_checkpoint_and_the_run_resumable(tmp_path, monkeypatch):
    cfg = tiny(tmp_path)
    trainer = Trainer(cfg, log=None)
    real_save = torch.save
    saves = {"n": 0}

    def save_then_fill_the_disk(obj, f, *args, **kwargs):
        saves["n"] += 1
        if saves["n"] == 2:                     # the second epoch's checkpoint: half written, then ENOSPC
            Path(f).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)
    monkeypatch.setattr(ckpt.torch, "save", save_then_fill_the_disk)
    with pytest.raises(RunError, match=r"the disk is full while saving the checkpoint of epoch 2.*"
                                       r"free space.*--resume"):
        trainer.fit()
    monkeypatch.undo()
    run = tmp_path / "run"
    assert not list(run.glob(".*.tmp-*")), "the partial temporary file was left behind"
    assert ckpt.load_checkpoint(run / "checkpoint.pt")["epoch"] == 0
    Trainer(cfg, log=None).fit(resume=True)
    assert ckpt.load_checkpoint(run / "checkpoint.pt")["epoch"] == 2


def test_stale_temporary_files_of_a_killed_write_are_removed(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    stale = run / ".checkpoint.pt.tmp-12345"
    stale.write_bytes(b"half a checkpoint")
    Trainer(tiny(tmp_path, epochs=1), log=None).fit()
    assert not stale.exists()


def test_saving_a_checkpoint_never_leaves_it_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # A reader (a resume, a watcher) must find checkpoint.pt at every moment of a save: the old file
    # becomes .prev through a second name, then the new one replaces it in one rename.
    import os
    path = tmp_path / "checkpoint.pt"
    ckpt.save_checkpoint({"step": torch.zeros(1)}, path)
    rename = os.replace

    def watched(src: str | Path, dst: str | Path) -> None:
        assert path.exists(), f"checkpoint.pt missing while renaming {src} → {dst}"
        rename(src, dst)
    monkeypatch.setattr(os, "replace", watched)
    ckpt.save_checkpoint({"step": torch.ones(1)}, path)
    assert float(ckpt.load_checkpoint(path)["step"]) == 1.0
    assert float(ckpt.load_checkpoint(ckpt.previous_path(path))["step"]) == 0.0
