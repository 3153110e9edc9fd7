"""LSTSD's pretrained long-term teacher (``long_term_teacher="pretrained"``, ours, not the paper's):
z^L recorded by one pass before training, never rewritten, distilled from the first epoch; the
``needs_initial_pass`` declaration and ``record_initial``; the harness's pass and its resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from fakedata import interrupt_in_third_epoch
from lstsd import LSTSD
from lstsd.harness.config import TrainConfig
from lstsd.harness.trainer import Trainer
from lstsd.methods import available_methods, create_method
from toy import B, C, N, T, batches, hand_kl, make_data, make_model, make_optimizer, setup_run

DATA = make_data()


def record_pass(method, model) -> torch.Tensor:
    """The pass before training, as a user's loop makes it; returns the softened predictions per sample."""
    model.eval()
    with torch.no_grad():
        logits = model(DATA[0])
        for x, y, idx in batches(DATA, 0):
            method.record_initial(model(x), y, idx)
    model.train()
    return F.softmax(logits / T, dim=1)


def test_the_long_term_teacher_is_the_pretrained_network_in_every_epoch_and_is_never_rewritten():
    model, opt, _, method = setup_run("lstsd", generation_epochs=1, long_term_teacher="pretrained",
                                      bank_dtype="float32")
    pretrained = record_pass(method, model)
    previous: torch.Tensor | None = None
    for epoch in range(3):
        method.start_epoch(epoch)
        recorded = torch.zeros(N, C)
        for x, y, idx in batches(DATA, epoch):
            logits = model(x)
            loss = method.loss(logits, y, idx)
            expected = F.cross_entropy(logits.detach().double(), y) + 2.4 * hand_kl(logits, pretrained[idx])
            if previous is not None:   # the short-term teacher from the second mini-generation, as in the paper
                expected = expected + 4.0 * hand_kl(logits, previous[idx])
            assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)
            assert method.loss_weights() == {"ce": 1.0, "long": 2.4, "short": 4.0 if epoch else 0.0}
            recorded[idx] = F.softmax(logits.detach() / T, dim=1)
            opt.zero_grad()
            loss.backward()
            opt.step()
        diagnostics = method.teacher_diagnostics()
        assert diagnostics["long_coverage"] == 100.0 and diagnostics["long_age"] == epoch + 1
        method.end_epoch()
        previous = recorded
        stored, _ = method.long_term_bank.read(torch.arange(N))
        assert torch.allclose(stored, pretrained, atol=1e-6)   # z^L: still the pretrained predictions


def test_without_the_pass_epoch_0_is_refused_and_the_pass_is_refused_where_it_does_not_belong():
    _, _, _, method = setup_run("lstsd", long_term_teacher="pretrained")
    with pytest.raises(RuntimeError, match=r"call method.record_initial\(model\(x\), y, idx\)"):
        method.start_epoch(0)
    model, _, _, method = setup_run("lstsd", long_term_teacher="pretrained")
    record_pass(method, model)
    method.start_epoch(0)
    with pytest.raises(RuntimeError, match="before the first start_epoch"):
        method.record_initial(model(DATA[0][:B]), DATA[1][:B], torch.arange(B))
    plain = create_method("lstsd", num_samples=N, num_classes=C)
    with pytest.raises(RuntimeError, match="needs_initial_pass is False"):
        plain.record_initial(model(DATA[0][:B]), DATA[1][:B], torch.arange(B))
    with pytest.raises(ValueError, match="needs lambda_long > 0"):
        LSTSD(N, C, lambda_long=0.0, long_term_teacher="pretrained")
    with pytest.raises(ValueError, match="long_term_teacher must be one of"):
        LSTSD(N, C, long_term_teacher="initial")


def test_only_methods_that_declare_an_initial_pass_accept_one():
    declared = {name for name in available_methods()
                if create_method(name, num_samples=N, num_classes=C).needs_initial_pass}
    assert declared == set()   # an option, not a method: lstsd with long_term_teacher="pretrained"
    assert LSTSD(N, C, long_term_teacher="pretrained").needs_initial_pass


def test_resume_after_the_pass_is_exact_and_older_checkpoints_load_as_the_paper_s():
    def run(epochs: range, model, opt, method) -> list[float]:
        out = []
        for epoch in epochs:
            method.start_epoch(epoch)
            for x, y, idx in batches(DATA, epoch):
                loss = method.loss(model(x), y, idx)
                opt.zero_grad()
                loss.backward()
                opt.step()
                out.append(float(loss.detach()))
            method.end_epoch()
        return out

    settings = {"generation_epochs": 1, "long_term_teacher": "pretrained"}
    model, opt, _, method = setup_run("lstsd", **settings)
    record_pass(method, model)
    full = run(range(4), model, opt, method)

    model, opt, _, method = setup_run("lstsd", **settings)
    record_pass(method, model)
    first = run(range(2), model, opt, method)
    saved = {"model": model.state_dict(), "opt": opt.state_dict(), "method": method.state_dict()}
    model = make_model(7)
    model.load_state_dict(saved["model"])
    opt = make_optimizer(model)
    opt.load_state_dict(saved["opt"])
    method = create_method("lstsd", num_samples=N, num_classes=C, **settings)
    method.load_state_dict(saved["method"])          # no second pass: the bank comes with the state
    assert first + run(range(2, 4), model, opt, method) == full

    paper = create_method("lstsd", num_samples=N, num_classes=C)
    old = paper.state_dict()
    del old["_extra_state"]["hparams"]["long_term_teacher"]       # as written before the option existed
    create_method("lstsd", num_samples=N, num_classes=C).load_state_dict(old)
    with pytest.raises(ValueError, match="long_term_teacher: saved 'generations' vs now 'pretrained'"):
        create_method("lstsd", num_samples=N, num_classes=C, long_term_teacher="pretrained").load_state_dict(old)


def test_per_token_the_pass_records_every_supervised_token_and_epoch_0_distils_from_it():
    vocab = 40
    labels = torch.tensor([[-100, 3, 7, 9, -100], [-100, -100, 1, 2, 5]])
    idx = torch.tensor([0, 1])
    torch.manual_seed(0)
    pretrained_logits = torch.randn(2, 5, vocab)
    for bank_format in ("sampled", "topk"):
        method = LSTSD(2, vocab, generation_epochs=1, per_token=True, temperature=1.0, bank_format=bank_format,
                       long_term_teacher="pretrained")
        method.record_initial(pretrained_logits, labels, idx)
        assert method.long_term_bank.counts.tolist() == [3, 3]   # supervised tokens after the causal shift
        method.start_epoch(0)
        same = method.loss(pretrained_logits.clone().requires_grad_(), labels, idx)
        other = method.loss(torch.randn(2, 5, vocab, requires_grad=True), labels, idx)
        parts = method.loss_components()
        assert float(parts["long"]) > 0 and float(parts["short"]) == 0 and float(other.detach()) > float(same.detach())
        method.end_epoch()


def test_the_harness_makes_the_pass_once_and_a_resumed_run_keeps_it(tmp_path: Path, monkeypatch):
    values = dict(dataset="digits", train_subset=96, model="resnet", model_args={"depth": 8, "width": 8},
                  method="lstsd", method_args={"generation_epochs": 1, "long_term_teacher": "pretrained"},
                  epochs=3, batch_size=32, lr=0.05, eval_batch_size=500, progress="none", augment=False)
    reference = Trainer(TrainConfig.from_dict(dict(values, run_dir=str(tmp_path / "ref"))), log=None).fit()
    assert reference["cost"]["initial_pass_seconds"] > 0
    rows = [json.loads(line) for line in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["teacher_long_coverage"] == 100.0 and rows[0]["weight_long"] == 2.4
    assert rows[0]["weight_short"] == 0.0 and rows[1]["teacher_short_coverage"] == 100.0

    cfg = TrainConfig.from_dict(dict(values, run_dir=str(tmp_path / "run")))
    interrupted = Trainer(cfg, log=None)
    interrupt_in_third_epoch(interrupted, monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        interrupted.fit()
    resumed = Trainer(cfg, log=None)
    calls = []
    monkeypatch.setattr(resumed, "initial_pass", lambda: calls.append(1))
    again = resumed.fit(resume=True)
    assert calls == [] and again["cost"]["initial_pass_seconds"] == interrupted.initial_pass_seconds
    assert again["final"] == reference["final"]        # the resumed run is the uninterrupted one
