"""Teacher diagnostics against hand computations: on a stand-in network whose logits are a known
table, LSTSD's teachers are known, so their accuracy, KL to the student, disagreement and age are too."""

from __future__ import annotations

import math

import pytest
import torch

from lstsd import LSTSD
from lstsd.diagnostics import TeacherMonitor
from lstsd.methods import create_method
from toy import index_batches

N, C, B, T = 12, 4, 5, 2.0


def softmax(row: list[float], t: float) -> list[float]:
    m = max(row)
    e = [math.exp((v - m) / t) for v in row]
    return [v / sum(e) for v in e]


def hand(teacher_rows: list[list[float]], student_rows: list[list[float]], labels: list[int]) -> dict[str, float]:
    """Quality, KL(teacher ‖ student at T) and disagreement written out per sample."""
    correct = kl = disagree = 0.0
    for z_logits, s_logits, y in zip(teacher_rows, student_rows, labels):
        z, p = softmax(z_logits, T), softmax(s_logits, T)
        teacher_class = max(range(C), key=lambda c: z[c])
        correct += teacher_class == y
        kl += sum(zc * math.log(zc / pc) for zc, pc in zip(z, p))
        disagree += teacher_class != max(range(C), key=lambda c: p[c])
    n = len(labels)
    return {"quality": 100 * correct / n, "kl": kl / n, "disagreement": 100 * disagree / n}


@pytest.mark.parametrize("epoch", [3, 4, 5])
def test_lstsd_teachers_measured_against_the_known_snapshots(epoch: int):
    E = 3
    table = torch.randn(6, N, C, generator=torch.Generator().manual_seed(0)) * 2
    y = torch.randint(0, C, (N,), generator=torch.Generator().manual_seed(1))
    method = LSTSD(N, C, generation_epochs=E, temperature=T, bank_dtype="float32")
    for e in range(epoch + 1):
        method.start_epoch(e)
        for idx in index_batches(N, B, e):
            method.loss(table[e, idx], y[idx], idx)
        if e < epoch:
            method.end_epoch()
    got = method.teacher_diagnostics()
    labels = y.tolist()
    short = hand(table[epoch - 1].tolist(), table[epoch].tolist(), labels)      # recorded last epoch
    long = hand(table[E - 1].tolist(), table[epoch].tolist(), labels)          # last epoch of mini-generation 0
    for name, want in (("short", short), ("long", long)):
        for key, value in want.items():
            assert got[f"{name}_{key}"] == pytest.approx(value, rel=1e-5, abs=1e-6), f"{name}_{key}"
        assert got[f"{name}_coverage"] == 100.0
    assert got["short_age"] == 1 and got["long_age"] == epoch - (E - 1)


def test_first_mini_generation_has_no_teacher_and_a_new_epoch_starts_from_zero():
    method = LSTSD(N, C, generation_epochs=2)
    method.start_epoch(0)
    method.loss(torch.randn(N, C), torch.zeros(N, dtype=torch.long), torch.arange(N))
    assert method.teacher_diagnostics() == {}
    method.end_epoch()
    method.start_epoch(1)
    assert method.teacher_diagnostics() == {}


def test_coverage_counts_samples_without_a_recorded_target():
    monitor = TeacherMonitor()
    z = torch.softmax(torch.randn(4, C), 1)
    monitor.record("t", z, torch.randn(4, C), torch.zeros(4, dtype=torch.long), temperature=1.0,
                   mask=torch.tensor([True, False, False, False]))
    monitor.record("t", None, torch.randn(4, C), torch.zeros(4, dtype=torch.long), temperature=1.0)
    assert monitor.summary()["t_coverage"] == pytest.approx(100 / 8)


def test_a_teacher_equal_to_the_student_has_zero_kl_and_no_disagreement():
    monitor = TeacherMonitor()
    logits = torch.randn(6, C)
    monitor.record("self", torch.softmax(logits / T, 1), logits, logits.argmax(1), temperature=T)
    s = monitor.summary()
    assert s["self_kl"] == pytest.approx(0, abs=1e-6) and s["self_disagreement"] == 0 and s["self_quality"] == 100


def test_sparse_teachers_report_the_mass_their_stored_tokens_hold_and_dense_ones_do_not():
    from lstsd.sparse import SparseTargets
    monitor = TeacherMonitor()
    probs = torch.tensor([[0.5, 0.2, 0.1, 0.1, 0.1], [0.9, 0.05, 0.05, 0.0, 0.0]])
    top2 = SparseTargets.top_k(probs, k=2)             # keeps 0.7 and 0.95 of the mass
    monitor.record("topk", top2, torch.randn(2, 5), torch.zeros(2, dtype=torch.long), temperature=1.0,
                   mask=torch.tensor([True, True]))
    monitor.record("dense", probs, torch.randn(2, 5), torch.zeros(2, dtype=torch.long), temperature=1.0)
    s = monitor.summary()
    assert s["topk_stored_mass"] == pytest.approx(100 * (0.7 + 0.95) / 2)
    assert "dense_stored_mass" not in s and s["dense_quality"] == 100


def test_per_token_lstsd_reports_stored_mass_below_100_with_topk_banks_and_100_with_sampled_ones():
    vocab, labels = 50, torch.tensor([[-100, 3, 7, 9], [-100, -100, 1, 2]])
    for bank_format, below in (("topk", True), ("sampled", False)):
        method = LSTSD(2, vocab, generation_epochs=1, per_token=True, bank_format=bank_format, temperature=1.0)
        for epoch in range(2):
            method.start_epoch(epoch)
            method.loss(torch.randn(2, 4, vocab), labels, torch.tensor([0, 1]))
            mass = method.teacher_diagnostics().get("short_stored_mass")
            method.end_epoch()
        assert mass is not None and (mass < 99.0 if below else mass == pytest.approx(100.0, abs=0.1))


@pytest.mark.parametrize("name,teacher,age", [("ps_kd", "previous", 1.0), ("temporal_ensembling", "ensemble", 2.5),
                                              ("mean_teacher", "ema", 1 / (0.1 * 3))])
def test_every_teacher_method_reports_its_teacher(name: str, teacher: str, age: float):
    from toy import make_data, setup_run, train
    settings = {"mean_teacher": {"ema_decay": 0.9}}.get(name, {})
    model, opt, sched, method = setup_run(name, epochs=3, **settings)
    train(model, opt, sched, method, range(2), make_data())
    got = method.teacher_diagnostics()
    assert set(got) == {f"{teacher}_{k}" for k in ("quality", "kl", "disagreement", "coverage", "age")}
    assert got[f"{teacher}_age"] == pytest.approx(age) and 0 <= got[f"{teacher}_quality"] <= 100


def test_methods_without_a_teacher_report_nothing():
    for name in ("vanilla", "label_smoothing"):
        method = create_method(name, num_samples=N, num_classes=C)
        method.start_epoch(0)
        method.loss(torch.randn(3, C), torch.zeros(3, dtype=torch.long), torch.arange(3))
        assert method.teacher_diagnostics() == {}


def test_the_trainer_logs_diagnostics_per_epoch_and_summarises_them(tmp_path):
    import json

    from lstsd.harness.config import TrainConfig
    from lstsd.harness.trainer import Trainer
    cfg = TrainConfig.from_dict(dict(dataset="digits", train_subset=120, model="resnet",
                                     model_args={"depth": 8, "width": 4}, method="lstsd",
                                     method_args={"generation_epochs": 2}, epochs=4, batch_size=40,
                                     progress="none", augment=False, run_dir=str(tmp_path / "run")))
    results = Trainer(cfg, log=None).fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert not any(k.startswith("teacher_") for r in rows[:2] for k in r)     # first mini-generation
    assert {"teacher_short_quality", "teacher_long_kl", "teacher_long_age"} <= set(rows[2]) and rows[3]
    assert [r["teacher_long_age"] for r in rows[2:]] == [1, 2]
    summary = results["teachers"]
    assert summary["long_age"] == {"last": 2, "mean": 1.5, "epochs": 2}
    assert summary["short_quality"]["last"] == rows[3]["teacher_short_quality"]
