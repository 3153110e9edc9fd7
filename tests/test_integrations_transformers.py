"""lstsd.integrations.transformers against the real ``transformers.Trainer`` (CPU, a tiny randomly
initialised BERT, 32 rows of random tokens).

Checks: the loss the Trainer backpropagates is Eq. (1) (``lstsd_loss``) on the same logits; every
training row is written once per epoch and none during evaluation or prediction (the index column
survives ``remove_unused_columns`` and never reaches the model); a run killed after a checkpoint
and resumed with ``train(resume_from_checkpoint=...)`` continues with the same banks and losses,
from a mid-epoch checkpoint and from one written on an epoch's last step; under gradient
accumulation the gradients equal those of one batch of the same effective size (the loss is
scaled exactly once); every registered method runs; bad input is refused naming the fix; under
``torchrun`` (2 gloo processes) the banks are identical on both ranks after every epoch.

Run as a script (``torchrun --nproc_per_node=2 tests/test_integrations_transformers.py --ddp OUT``)
it is the DDP worker.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

import lstsd  # noqa: E402
from lstsd.integrations.transformers import METHOD_STATE_NAME, LSTSDTrainer, add_index_column  # noqa: E402
from lstsd.methods.lstsd import lstsd_loss  # noqa: E402
from method_settings import framework_settings  # noqa: E402
from processes import torchrun  # noqa: E402

N, C, VOCAB, LENGTH = 32, 3, 40, 8
SETTINGS = framework_settings("lstsd_wo_long")


def rows(n: int = N, seed: int = 1, labels: bool = True) -> list[dict[str, Any]]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, VOCAB, (n, LENGTH), generator=g)
    y = torch.randint(0, C, (n,), generator=g)
    return [{"input_ids": ids[i], "attention_mask": torch.ones(LENGTH, dtype=torch.long),
             **({"labels": int(y[i])} if labels else {})} for i in range(n)]


def model(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=LENGTH, num_labels=C,
                                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    return transformers.BertForSequenceClassification(config)


def arguments(folder: Path, **kwargs: Any) -> Any:
    base = {"num_train_epochs": 3, "per_device_train_batch_size": 8, "per_device_eval_batch_size": 16,
            "learning_rate": 1e-2, "seed": 0, "save_strategy": "no", "logging_strategy": "no", "report_to": [],
            "disable_tqdm": True, "use_cpu": True, "dataloader_num_workers": 0}
    return transformers.TrainingArguments(str(folder), **{**base, **kwargs})


class Recording(LSTSDTrainer):
    """Records, per compute_loss call: whether it trained, the epoch, the indices, the loss, and
    (for LSTSD, in training) Eq. (1) computed independently from the banks' rows read before the
    step; per training_step, what was backpropagated; per optimizer step, the gradients."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[dict[str, Any]] = []
        self.backward: list[torch.Tensor] = []
        self.grads: list[dict[str, torch.Tensor]] = []
        self.writes: list[dict[str, Any]] = []
        recorder = self

        class Grads(transformers.TrainerCallback):
            def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
                recorder.grads.append({k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
        self.add_callback(Grads())
        for name in ("short_term_bank", "long_term_bank"):
            bank = getattr(self.method, name, None)
            if bank is not None:
                def store(indices: torch.Tensor, *rows_: torch.Tensor, _bank: str = name, _store: Any = bank.store,
                          **options: Any):
                    self.writes.append({"bank": _bank, "training": self.model.training, "epoch": self.method.epoch,
                                        "idx": indices.clone()})
                    _store(indices, *rows_, **options)
                bank.store = store

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        m, idx = self.method, inputs.get("idx")
        before = None
        if model.training and m.name == "lstsd" and idx is not None:
            before = (m.long_term_bank.read(idx), m.short_term_bank.read(idx), m.generations.index(m.epoch))
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        expected = None
        if before is not None:
            (long_term, long_mask), (short_term, short_mask), mini_generation = before
            expected, _ = lstsd_loss(outputs.logits.detach(), inputs["labels"],
                                     long_term_targets=long_term if mini_generation else None,
                                     short_term_targets=short_term if mini_generation else None,
                                     long_term_mask=long_mask, short_term_mask=short_mask, lambda_long=m.lambda_long,
                                     lambda_short=m.lambda_short, temperature=m.distillation.temperature)
        self.calls.append({"training": model.training, "epoch": m.epoch, "loss": loss.detach().clone(),
                           "idx": None if idx is None else idx.clone(), "expected": expected,
                           "parts": {k: v.clone() for k, v in m.loss_components().items()}})
        return (loss, outputs) if return_outputs else loss

    def training_step(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = super().training_step(*args, **kwargs)       # what was backpropagated (already divided)
        self.backward.append(out.clone())
        return out


def banks(method: lstsd.Method) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in method.state_dict().items() if isinstance(v, torch.Tensor)}


def trainer_for(folder: Path, name: str = "lstsd", *, seed: int = 0, train: Any = None, evaluate: Any = None,
                **kwargs: Any) -> Recording:
    return Recording(model=model(seed), args=arguments(folder, **kwargs),
                     train_dataset=add_index_column(rows()) if train is None else train, eval_dataset=evaluate,
                     method=name, method_settings=SETTINGS.get(name, {}))


# ----------------------------------------------------------------------------- loss and writes
def test_the_loss_is_lstsd_loss_and_rows_are_written_only_in_training(tmp_path: Path):
    train_set = add_index_column(rows())
    trainer = trainer_for(tmp_path, train=train_set, evaluate=train_set, eval_strategy="epoch")   # with "idx"
    trainer.train()

    training = [c for c in trainer.calls if c["training"]]
    assert len(training) == 3 * N // 8 == len(trainer.backward)
    for call, backward in zip(training, trainer.backward):
        torch.testing.assert_close(call["loss"], call["expected"], rtol=0, atol=1e-6)
        torch.testing.assert_close(backward, call["loss"], rtol=0, atol=0)   # no accumulation: as computed
    assert all(c["parts"]["short"] > 0 for c in training if c["epoch"] >= 1), "mini-generations 2+ distil"
    assert all(c["parts"]["short"] == 0 for c in training if c["epoch"] == 0), "mini-generation 1 is CE only"

    before = banks(trainer.method)
    metrics = trainer.evaluate()
    predictions = trainer.predict(train_set)
    unlabelled = trainer.predict(add_index_column(rows(labels=False)))
    after = banks(trainer.method)
    assert all(torch.equal(before[k], after[k]) for k in before), "evaluation/prediction changed a bank"
    assert metrics["eval_loss"] > 0 and predictions.predictions.shape == (N, C) == unlabelled.predictions.shape
    assert sum(not c["training"] for c in trainer.calls) == 3 * 2 + 2 * 2, "epoch evals, evaluate, predict"

    assert trainer.writes and all(w["training"] for w in trainer.writes), "a row was written outside training"
    for epoch in range(3):
        for bank in ("short_term_bank", "long_term_bank"):   # E = 1: both teachers are recorded every epoch
            written = torch.cat([w["idx"] for w in trainer.writes if w["bank"] == bank and w["epoch"] == epoch])
            assert sorted(written.tolist()) == list(range(N)), f"epoch {epoch} {bank}: each row exactly once"


def test_gradient_accumulation_scales_the_loss_exactly_once(tmp_path: Path):
    whole = trainer_for(tmp_path / "whole", per_device_train_batch_size=16, max_grad_norm=0.0)
    accumulated = trainer_for(tmp_path / "acc", per_device_train_batch_size=8, gradient_accumulation_steps=2,
                              max_grad_norm=0.0)
    assert accumulated.model_accepts_loss_kwargs is False   # BERT's forward takes **kwargs: the Trainer would skip /GA
    whole.train()
    accumulated.train()

    assert len(whole.grads) == len(accumulated.grads) == 3 * N // 16
    for step, (a, b) in enumerate(zip(accumulated.grads, whole.grads)):
        for key in b:
            torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-6, msg=f"step {step}: grad of {key}")
    for call, backward in zip([c for c in accumulated.calls if c["training"]], accumulated.backward):
        torch.testing.assert_close(backward, call["loss"] / 2, rtol=0, atol=1e-7)
    for (key, a), b in zip(banks(accumulated.method).items(), banks(whole.method).values()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5, msg=key)


# ----------------------------------------------------------------------------- kill and resume
class Kill(transformers.TrainerCallback):
    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 9:
            raise RuntimeError("killed")


@pytest.mark.parametrize("name", ["lstsd", "mean_teacher", "snapshot_distillation"])
def test_kill_and_resume_from_a_checkpoint_continues_the_same_run(tmp_path: Path, name: str):
    # 4 steps per epoch, a checkpoint every 3 steps, killed at step 9 before its checkpoint:
    # checkpoint-3 is in the middle of epoch 0, checkpoint-6 in the middle of epoch 1.
    full = trainer_for(tmp_path / "full", name)
    full.train()

    killed = trainer_for(tmp_path / "killed", name, save_strategy="steps", save_steps=3)
    killed.add_callback(Kill())
    with pytest.raises(RuntimeError, match="killed"):
        killed.train()
    assert sorted(os.listdir(tmp_path / "killed")) == ["checkpoint-3", "checkpoint-6"]

    for step in (3, 6):
        folder = tmp_path / "killed" / f"checkpoint-{step}"
        assert (folder / METHOD_STATE_NAME).is_file()
        resumed = trainer_for(tmp_path / f"resumed-{step}", name, seed=123)   # other weights: all from the files
        resumed.train(resume_from_checkpoint=str(folder))
        after = [c for c in full.calls if c["training"]][step:]
        got = [c for c in resumed.calls if c["training"]]
        assert [c["epoch"] for c in got] == [c["epoch"] for c in after]
        for a, b in zip(got, after):
            assert torch.equal(a["idx"], b["idx"]), "the Trainer skips the batches already seen"
            torch.testing.assert_close(a["loss"], b["loss"], rtol=0, atol=1e-5)
        full_state, resumed_state = banks(full.method), banks(resumed.method)
        assert full_state.keys() == resumed_state.keys()
        for key in full_state:
            torch.testing.assert_close(resumed_state[key], full_state[key], rtol=0, atol=1e-5, msg=f"{step}: {key}")


@pytest.mark.parametrize("name", ["lstsd", "lstsd_single"])   # LSTSD (single) snapshots in end_epoch
def test_a_checkpoint_on_an_epochs_last_step_is_resumed_by_closing_that_epoch(tmp_path: Path, name: str):
    # checkpoint-8 is written on epoch 1's last step, before on_epoch_end: the epoch is still open,
    # and the Trainer resumes at epoch 2, so the method's epoch 1 is closed first.
    full = trainer_for(tmp_path / "full", name)
    full.train()
    killed = trainer_for(tmp_path / "killed", name, save_strategy="steps", save_steps=4)   # epochs 0, 1's last steps
    killed.add_callback(Kill())
    with pytest.raises(RuntimeError, match="killed"):
        killed.train()
    folder = tmp_path / "killed" / "checkpoint-8"
    assert torch.load(folder / METHOD_STATE_NAME, weights_only=True)["open_epoch"] == 1
    resumed = trainer_for(tmp_path / "resumed", name, seed=123)
    resumed.train(resume_from_checkpoint=str(folder))
    got = [c["loss"] for c in resumed.calls if c["training"]]
    want = [c["loss"] for c in full.calls if c["training"]][8:]
    assert len(got) == len(want) == 4
    torch.testing.assert_close(torch.stack(got), torch.stack(want), rtol=0, atol=1e-5)
    for key, value in banks(full.method).items():
        torch.testing.assert_close(banks(resumed.method)[key], value, rtol=0, atol=1e-5, msg=key)


# ----------------------------------------------------------------------------- every method
@pytest.mark.parametrize("name", [n for n in SETTINGS if n != "lstsd"])
def test_every_registered_method_trains_through_the_trainer(tmp_path: Path, name: str):
    trainer = trainer_for(tmp_path, name, num_train_epochs=2, learning_rate=1e-3)
    trainer.train()
    assert trainer.method.next_epoch == 2
    assert all(torch.isfinite(v) for c in trainer.calls for v in c["parts"].values())
    if name.startswith("snapshot"):    # the cyclic schedule replaced lr_scheduler_type
        assert isinstance(trainer.lr_scheduler, torch.optim.lr_scheduler.CosineAnnealingWarmRestarts)
        assert trainer.lr_scheduler.T_0 == N // 8
        probs = trainer.eval_predictions({"input_ids": torch.stack([r["input_ids"] for r in rows()[:4]])})
        assert probs["model"].shape == (4, C)
        if name == "snapshot_ensembles":
            assert probs["ensemble"].shape == (4, C)
    if name == "mean_teacher":
        teacher = dict(trainer.method.teacher.module.model.named_parameters())
        assert any(not torch.equal(teacher[k], p) for k, p in model().named_parameters())


def test_the_teachers_diagnostics_are_logged_once_per_epoch(tmp_path: Path):
    trainer = trainer_for(tmp_path, "lstsd", num_train_epochs=3, learning_rate=1e-3)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if any(k.startswith("teacher/") for k in entry)]
    assert [round(entry["epoch"]) for entry in logged] == [2, 3]    # E = 1: teachers from the second epoch
    for entry in logged:
        assert entry["teacher/short_coverage"] == 100.0 and 0 <= entry["teacher/long_quality"] <= 100
        assert entry["teacher/short_kl"] >= 0


def test_the_covered_methods_are_the_registered_ones():
    assert set(SETTINGS) | {"lstsd_wo_long"} == set(lstsd.available_methods())


# ----------------------------------------------------------------------------- bad input
def test_a_training_set_without_the_index_column_is_refused_naming_add_index_column(tmp_path: Path):
    with pytest.raises(ValueError, match=r"no 'idx' key .*add_index_column\(train_dataset"):
        trainer_for(tmp_path, train=rows())
    trainer_for(tmp_path, "vanilla", train=rows())        # a method without per-sample state does not need it


def test_an_unknown_method_name_is_refused_with_the_available_ones(tmp_path: Path):
    with pytest.raises(ValueError, match="unknown method 'lstsdd'; available: .*lstsd"):
        LSTSDTrainer(model=model(), args=arguments(tmp_path), train_dataset=add_index_column(rows()), method="lstsdd")


def test_what_the_trainer_cannot_combine_with_a_method_is_refused(tmp_path: Path):
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    trainer = LSTSDTrainer(model=net, args=arguments(tmp_path), train_dataset=add_index_column(rows()),
                           method="snapshot_ensembles", optimizers=(opt, torch.optim.lr_scheduler.StepLR(opt, 1)))
    with pytest.warns(UserWarning, match="sets its own LR schedule"):
        trainer.train()
    assert isinstance(trainer.lr_scheduler, torch.optim.lr_scheduler.CosineAnnealingWarmRestarts)
    with pytest.raises(ValueError, match="method='label_smoothing'"):
        trainer_for(tmp_path, label_smoothing_factor=0.1)
    with pytest.raises(ValueError, match="compute_loss_func"):
        LSTSDTrainer(model=model(), args=arguments(tmp_path), train_dataset=add_index_column(rows()),
                     compute_loss_func=lambda outputs, labels, num_items_in_batch=None: outputs.logits.sum())
    with pytest.raises(ValueError, match="num_samples=len"):
        LSTSDTrainer(model=model(), args=arguments(tmp_path), train_dataset=add_index_column(rows()), num_samples=N + 1)


@pytest.mark.parametrize("accumulation", [1, 2])
def test_recording_after_the_update_records_every_batch(tmp_path: Path, accumulation: int):
    trainer = LSTSDTrainer(model=model(), args=arguments(tmp_path, num_train_epochs=1,
                                                         gradient_accumulation_steps=accumulation),
                           train_dataset=add_index_column(rows()),
                           method_settings={"record_targets": "after_update_eval"})
    trainer.train()                                                  # end_step (on_step_end) records the batches
    assert bool(trainer.method.short_term_bank.recorded.all())


def test_resuming_from_a_plain_trainer_checkpoint_is_refused(tmp_path: Path):
    plain = transformers.Trainer(model=model(), args=arguments(tmp_path / "plain", save_strategy="epoch",
                                                               num_train_epochs=1), train_dataset=rows())
    plain.train()
    with pytest.raises(FileNotFoundError, match=f"has no {METHOD_STATE_NAME}"):
        trainer_for(tmp_path / "next").train(resume_from_checkpoint=str(tmp_path / "plain" / "checkpoint-4"))


# ----------------------------------------------------------------------------- DDP
DDP_N, DDP_EPOCHS = 45, 3          # 45 rows on 2 ranks: the distributed sampler repeats one


def _ddp_worker(out: str) -> None:
    """Run once per rank by torchrun."""
    torch.set_num_threads(1)

    class SaveEachEpoch(transformers.TrainerCallback):
        def __init__(self, trainer: Any) -> None:
            self.trainer = trainer

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:   # after LSTSDTrainer's
            epoch = round(state.epoch) - 1
            torch.save(banks(self.trainer.method), Path(out) / f"rank{args.process_index}-epoch{epoch}.pt")

    trainer = LSTSDTrainer(model=model(), args=arguments(Path(out) / "run", num_train_epochs=DDP_EPOCHS,
                                                         ddp_backend="gloo", ddp_find_unused_parameters=False),
                           train_dataset=add_index_column(rows(DDP_N)), method="lstsd",
                           method_settings={"generation_epochs": 1, "bank_dtype": "float32"})
    assert trainer.args.world_size == 2
    trainer.add_callback(SaveEachEpoch(trainer))
    trainer.train()


@pytest.mark.slow
def test_torchrun_keeps_the_banks_identical_on_both_ranks(tmp_path: Path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = torchrun(
        [str(Path(__file__).resolve()), "--ddp", str(tmp_path)], env=env, timeout=300,
        finished=lambda run: all((tmp_path / f"rank{r}-epoch{DDP_EPOCHS - 1}.pt").exists() for r in range(2)))
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    for epoch in range(DDP_EPOCHS):
        states = [torch.load(tmp_path / f"rank{r}-epoch{epoch}.pt", weights_only=True) for r in range(2)]
        for key in states[0]:
            assert torch.equal(states[0][key], states[1][key]), f"epoch {epoch}: {key} differs between ranks"
        assert bool(states[0]["short_term_bank.recorded"].all()), "both ranks' rows reach every rank's bank"



def test_the_loss_parts_are_logged_beside_the_training_loss(tmp_path: Path):
    # As the Lightning callback logs lstsd/ce, lstsd/long, ...: the mean since the last log, and the
    # parts add up to the logged loss with the method's weights (2.4 and 4.0 once distilling).
    trainer = trainer_for(tmp_path, "lstsd", num_train_epochs=3, learning_rate=1e-3, logging_strategy="steps",
                          logging_steps=1)
    trainer.train()
    logs = [log for log in trainer.state.log_history if "loss" in log and "lstsd/ce" in log]
    assert logs and all({"lstsd/ce", "lstsd/long", "lstsd/short", "lstsd/total"} <= set(log) for log in logs)
    last = logs[-1]
    assert last["lstsd/long"] > 0 and last["lstsd/short"] > 0
    weighted = last["lstsd/ce"] + 2.4 * last["lstsd/long"] + 4.0 * last["lstsd/short"]
    assert weighted == pytest.approx(last["lstsd/total"], rel=1e-3)


if __name__ == "__main__" and sys.argv[1:2] == ["--ddp"]:
    _ddp_worker(sys.argv[2])
    # Skip the interpreter's shutdown, where gloo's worker threads can abort a finished DDP run
    # (a PyTorch race, docs/known_issues.md); the banks are saved and closed by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
