"""Tests of the one-generation baselines (lstsd.methods): each method's defining behaviour against a
hand computation, on the toy problem of ``toy.py``. The checks every method shares are in
``test_methods_generic.py``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from lstsd.methods import create_method
from lstsd.methods.temporal_ensembling import gaussian_rampup
from toy import (
    LR,
    STEPS,
    B,
    C,
    D,
    N,
    T,
    assert_same,
    batches,
    hand_kl,
    make_data,
    make_model,
    model_with,
    setup_run,
    train,
    weights,
)


# ----------------------------------------------------------------------------- Mean Teacher
def test_mean_teacher_is_the_ema_of_weights_and_buffers():
    alpha = 0.9
    model, opt, sched, method = setup_run("mean_teacher", ema_decay=alpha)
    assert sched is None and method.extra_forward_passes == 1
    floats = lambda m: {k: v.detach().double().clone() for k, v in m.state_dict().items()  # noqa: E731
                        if v.is_floating_point()}
    ema = floats(model)                               # θ'_0 = θ_0
    assert set(ema) >= {"1.running_mean", "1.running_var"}

    def on_step(*_: Any) -> None:
        for k, v in floats(model).items():
            ema[k] = alpha * ema[k] + (1 - alpha) * v

    train(model, opt, sched, method, range(2), make_data(), on_step=on_step)   # 6 steps
    teacher = floats(method.teacher.module)
    student = floats(model)
    for k in ema:
        torch.testing.assert_close(teacher[k], ema[k], rtol=0, atol=1e-6, msg=f"EMA of {k}")
        assert not torch.allclose(teacher[k], student[k]), f"{k}: the teacher should lag the student"


def test_mean_teacher_loss_uses_the_eval_mode_teacher_on_the_same_batch():
    model, opt, sched, method = setup_run("mean_teacher", ema_decay=0.9, lambda_teacher=0.7)
    data = make_data()
    train(model, opt, sched, method, range(1), data)
    x, y, idx = next(batches(data, 1))
    teacher = model_with(weights(method.teacher.module))
    method.start_epoch(1)
    model.train()
    logits = model(x)
    loss = method.loss(logits, y, idx, model=model, inputs=x)
    z = torch.softmax(teacher(x) / T, dim=1)
    expected = F.cross_entropy(logits.double(), y) + 0.7 * hand_kl(logits, z)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    parts = method.loss_components()
    assert set(parts) == {"ce", "kd", "total"} and not parts["total"].requires_grad
    assert method.teacher.module.training is False

    model.eval()
    preds = method.eval_predictions(model, x)
    assert list(preds) == ["model", "teacher"]
    torch.testing.assert_close(preds["model"], torch.softmax(model(x), 1))
    torch.testing.assert_close(preds["teacher"], torch.softmax(teacher(x), 1))
    with pytest.raises(ValueError, match="inputs="):
        method.loss(model(x), y, idx, model=model)


# ----------------------------------------------------------------------------- Temporal Ensembling
def test_temporal_ensembling_targets_are_bias_corrected_averages():
    alpha = 0.6
    model, opt, sched, method = setup_run("temporal_ensembling", ensemble_momentum=alpha, lambda_teacher=1.5)
    data = make_data()
    seen: dict[int, list[torch.Tensor]] = {i: [] for i in range(N)}

    def on_step(epoch, x, y, idx, logits):
        for i, row in zip(idx.tolist(), torch.softmax(logits.detach().double() / T, dim=1)):
            seen[i].append(row)

    # Samples 0..19 only, drop_last: 16 per epoch, so counts differ and 20..23 are never trained.
    train(model, opt, sched, method, range(3), data, on_step=on_step, pool=20, drop_last=True)
    counts = {i: len(v) for i, v in seen.items()}
    assert 3 in counts.values() and counts[20] == counts[23] == 0

    target, mask = method.targets(torch.arange(N))
    for i in range(N):
        n = counts[i]
        assert bool(mask[i]) == (n > 0)
        if n == 0:
            assert torch.all(target[i] == 0)
            continue
        z_acc = sum((1 - alpha) * alpha ** (n - 1 - k) * z for k, z in enumerate(seen[i]))
        expected = z_acc / (1 - alpha ** n)
        torch.testing.assert_close(target[i].double(), expected, rtol=0, atol=1e-6)
        assert target[i].sum().item() == pytest.approx(1.0, abs=1e-5)

    # Loss on a batch mixing trained and never-trained samples: no KL term for t = 0 rows.
    idx = torch.tensor([0, 5, 20, 21, 9, 23, 1, 2])
    x, y = data[0][idx], data[1][idx]
    method.start_epoch(3)
    logits = model(x)
    loss = method.loss(logits, y, idx)
    expected = F.cross_entropy(logits.double(), y) + 1.5 * hand_kl(logits, target[idx], mask[idx])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert method.counts[20].item() == 1 and method.counts[0].item() == counts[0] + 1


def test_temporal_ensembling_rampup_weight():
    assert gaussian_rampup(3, 0) == 1.0
    assert gaussian_rampup(0, 4) == pytest.approx(math.exp(-5))
    assert gaussian_rampup(2, 4) == pytest.approx(math.exp(-5 * 0.25))
    assert gaussian_rampup(4, 4) == gaussian_rampup(9, 4) == 1.0
    method = create_method("temporal_ensembling", num_samples=N, num_classes=C, lambda_teacher=2.0, rampup_epochs=4)
    assert method.weight(2) == pytest.approx(2.0 * math.exp(-1.25))


# ----------------------------------------------------------------------------- Snapshot Ensembles
def test_snapshot_ensembles_lr_follows_the_restarted_cosine_and_ensemble_averages_snapshots():
    eta = 0.01
    model, opt, sched, method = setup_run("snapshot_ensembles", cycle_epochs=2, eta_min=eta)
    assert isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
    data = make_data()
    probe = data[0][:B]
    lrs: list[float] = []
    ends: dict[int, dict[str, torch.Tensor]] = {}
    model.eval()
    before = method.eval_predictions(model, probe)
    torch.testing.assert_close(before["ensemble"], before["model"])   # no snapshot yet

    def on_step(*_: Any) -> None:
        lrs.append(opt.param_groups[0]["lr"])

    orig_step = opt.step

    def step_recording_lr(*a: Any, **k: Any) -> Any:   # the LR used by each optimizer step
        on_step()
        return orig_step(*a, **k)

    opt.step = step_recording_lr  # type: ignore[method-assign]
    train(model, opt, sched, method, range(5), data, on_epoch_end=lambda e: ends.__setitem__(e, weights(model)))
    cycle = 2 * STEPS
    closed = [eta + (LR - eta) * (1 + math.cos(math.pi * (s % cycle) / cycle)) / 2 for s in range(5 * STEPS)]
    assert lrs == pytest.approx(closed, rel=1e-12, abs=1e-15)
    assert lrs[cycle] == pytest.approx(LR) and lrs[cycle - 1] < 0.02          # restarted at the boundary

    assert len(method.snapshots) == 2                                           # ends of epochs 1 and 3
    for snap, e in zip(method.snapshots, (1, 3)):
        assert_same(weights(snap), ends[e])
    model.eval()
    preds = method.eval_predictions(model, probe)
    expected = torch.stack([torch.softmax(model_with(ends[e])(probe), 1) for e in (1, 3)]).mean(0)
    torch.testing.assert_close(preds["ensemble"], expected)
    torch.testing.assert_close(preds["model"], torch.softmax(model(probe), 1))
    assert not torch.allclose(preds["ensemble"], preds["model"])


def test_snapshot_ensembles_max_snapshots_keeps_the_last():
    model, opt, sched, method = setup_run("snapshot_ensembles", cycle_epochs=1, max_snapshots=2)
    ends: dict[int, dict[str, torch.Tensor]] = {}
    train(model, opt, sched, method, range(4), make_data(), on_epoch_end=lambda e: ends.__setitem__(e, weights(model)))
    assert [weights(s)["0.weight"].tolist() for s in method.snapshots] == \
        [ends[e]["0.weight"].tolist() for e in (2, 3)]


# ----------------------------------------------------------------------------- Snapshot Distillation
def test_snapshot_distillation_teacher_is_fixed_per_mini_generation():
    model, opt, sched, method = setup_run("snapshot_distillation", cycle_epochs=2, lambda_teacher=0.5)
    assert method.extra_forward_passes == 1 and sched is not None
    data = make_data()
    probe = data[0][:B]
    ends: dict[int, dict[str, torch.Tensor]] = {}
    outputs: dict[int, list[torch.Tensor]] = {e: [] for e in range(5)}
    parts: dict[int, list[dict[str, torch.Tensor]]] = {e: [] for e in range(5)}

    def on_step(epoch, x, y, idx, logits):
        parts[epoch].append(method.loss_components())
        if method.teacher is not None:
            with torch.no_grad():
                outputs[epoch].append(method.teacher(probe))
        if epoch == 2 and len(parts[2]) == 1:      # first step of mini-generation 1: hand-computed loss
            z = torch.softmax(model_with(ends[1])(x) / T, dim=1)
            expected = F.cross_entropy(logits.double(), y) + 0.5 * hand_kl(logits, z)
            assert parts[2][0]["total"].item() == pytest.approx(expected.item(), rel=1e-5)

    train(model, opt, sched, method, range(5), data, on_step=on_step,
          on_epoch_end=lambda e: ends.__setitem__(e, weights(model)))
    for e in (0, 1):                       # first mini-generation: CE only, no teacher
        assert outputs[e] == []
        for p in parts[e]:
            assert p["kd"].item() == 0 and torch.equal(p["total"], p["ce"])
    within = outputs[2] + outputs[3]       # mini-generation 1: teacher = end of epoch 1, constant
    for out in within:
        assert torch.equal(out, within[0])
    torch.testing.assert_close(within[0], model_with(ends[1])(probe))
    for p in parts[2] + parts[3]:
        assert p["kd"].item() > 0
    for out in outputs[4]:                 # replaced at the boundary by the end of epoch 3
        torch.testing.assert_close(out, model_with(ends[3])(probe))
    assert not torch.allclose(outputs[4][0], within[0])
    assert_same(weights(method.teacher), ends[3])


# ----------------------------------------------------------------------------- LSTSD (single)
def test_lstsd_single_targets_and_loss_match_stored_snapshots():
    model, opt, sched, method = setup_run("lstsd_single", generation_epochs=2)
    assert (method.lambda_long, method.lambda_short, method.distillation.temperature) == (2.4, 4.0, 2.0)
    assert method.extra_forward_passes == 2 and sched is None
    data = make_data()
    ends: dict[int, dict[str, torch.Tensor]] = {}
    first_gen: list[dict[str, torch.Tensor]] = []
    train(model, opt, sched, method, range(3), data,
          on_step=lambda e, *a: first_gen.append(method.loss_components()) if e < 2 else None,
          on_epoch_end=lambda e: ends.__setitem__(e, weights(model)))
    for p in first_gen:                    # CE only in the first mini-generation
        assert torch.equal(p["total"], p["ce"]) and p["long"].item() == p["short"].item() == 0

    x, y, idx = next(batches(data, 3))
    long_z = torch.softmax(model_with(ends[1])(x) / T, dim=1)    # end of the previous mini-generation
    short_z = torch.softmax(model_with(ends[2])(x) / T, dim=1)   # end of the previous epoch
    got_long, got_short = method.teacher_targets(x)
    torch.testing.assert_close(got_long, long_z)
    torch.testing.assert_close(got_short, short_z)
    assert not torch.allclose(long_z, short_z)

    method.start_epoch(3)
    model.train()
    logits = model(x)
    loss = method.loss(logits, y, idx, model=model, inputs=x)
    expected = F.cross_entropy(logits.double(), y) + 2.4 * hand_kl(logits, long_z) + 4.0 * hand_kl(logits, short_z)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    parts = method.loss_components()
    assert parts["long"].item() == pytest.approx(hand_kl(logits, long_z).item(), rel=1e-5)
    assert parts["short"].item() == pytest.approx(hand_kl(logits, short_z).item(), rel=1e-5)


# ----------------------------------------------------------------------------- PS-KD
def test_ps_kd_alpha_schedule_and_target_mixture():
    model, opt, sched, method = setup_run("ps_kd", epochs=4, bank_dtype=torch.float32)
    assert [method.alpha(e) for e in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    data = make_data()
    recorded: dict[int, torch.Tensor] = {}
    first: list[dict[str, torch.Tensor]] = []

    def on_step(epoch, x, y, idx, logits):
        first.append(method.loss_components())
        for i, row in zip(idx.tolist(), torch.softmax(logits.detach(), dim=1)):
            recorded[i] = row

    train(model, opt, sched, method, range(1), data, on_step=on_step)
    for p in first:                        # nothing recorded yet: one-hot targets, i.e. CE
        assert p["total"].item() == pytest.approx(p["ce"].item(), rel=1e-6)

    x, y, idx = next(batches(data, 1))
    method.start_epoch(1)
    logits = model(x)
    loss = method.loss(logits, y, idx)
    prev = torch.stack([recorded[i] for i in idx.tolist()]).double()
    q = 0.6 * F.one_hot(y, C).double() + 0.4 * prev
    expected = -(q * torch.log_softmax(logits.detach().double(), 1)).sum() / B
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert method.predictions.read(idx)[1].all()
    parts = method.loss_components()
    assert parts["total"].item() == pytest.approx(0.6 * parts["ce"].item() + 0.4 * parts["kd"].item(), rel=1e-5)


def test_ps_kd_needs_the_run_length():
    method = create_method("ps_kd", num_samples=N, num_classes=C)
    with pytest.raises(RuntimeError, match="epochs"):
        method.start_epoch(0)
    with pytest.raises(ValueError, match="epochs=total_epochs"):
        method.setup(make_model())
    method.setup(make_model(), epochs=2)
    with pytest.raises(ValueError, match="outside the run"):
        method.alpha(2)


# ----------------------------------------------------------------------------- label smoothing
def test_label_smoothing_matches_torch():
    method = create_method("label_smoothing", num_samples=N, num_classes=C)
    x, y = make_data()
    logits = make_model()(x[:B])
    method.start_epoch(0)
    loss = method.loss(logits, y[:B], torch.arange(B))
    assert torch.equal(loss, F.cross_entropy(logits, y[:B], label_smoothing=0.1))
    p = method.loss_components()
    assert p["total"].item() == pytest.approx(0.9 * p["ce"].item() + 0.1 * p["smooth"].item(), rel=1e-6)
    assert p["total"].item() != pytest.approx(p["ce"].item(), rel=1e-3)


# ----------------------------------------------------------------------------- snapshots
def test_snapshot_copies_are_frozen_and_independent():
    from lstsd.methods._snapshots import refresh_snapshot, snapshot_of
    model = make_model()
    model(torch.randn(B, D)).sum().backward()
    snap = snapshot_of(model)
    assert not snap.training and all(not p.requires_grad and p.grad is None for p in snap.parameters())
    assert all(p.grad is not None for p in model.parameters())
    with torch.no_grad():
        model[0].weight.add_(1.0)
    assert not torch.equal(snap[0].weight, model[0].weight)
    same = refresh_snapshot(snap, model)
    assert same is snap and torch.equal(snap[0].weight, model[0].weight)
    assert copy.deepcopy(snap)[0].weight.data_ptr() != model[0].weight.data_ptr()
