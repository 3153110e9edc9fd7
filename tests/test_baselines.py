"""Tests of the one-generation baselines (lstsd.methods): each method's defining behaviour against a
hand computation, plus registry-wide checks of exact resume, forward-pass counts and refusal of
checkpoints from runs with other settings.

Everything runs on a tiny MLP with batch norm (so buffers are exercised) and 24 synthetic samples.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lstsd.methods import Method, available_methods, create_method
from lstsd.methods._snapshots import cyclic_cosine_lr
from lstsd.methods.temporal_ensembling import gaussian_rampup

N, C, D, B = 24, 3, 4, 8          # samples, classes, input features, batch size
STEPS = N // B                     # steps per epoch
LR = 0.1
T = 2.0


# ----------------------------------------------------------------------------- fixtures / helpers
def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, C))


def make_data(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, D, generator=g), torch.randint(0, C, (N,), generator=g)


def batches(data: tuple[torch.Tensor, torch.Tensor], epoch: int, pool: int = N,
            drop_last: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """A seeded shuffle of samples ``[0, pool)`` for ``epoch``, in batches of B."""
    x, y = data
    perm = torch.randperm(pool, generator=torch.Generator().manual_seed(100 + epoch))
    for start in range(0, pool, B):
        idx = perm[start:start + B]
        if drop_last and len(idx) < B:
            return
        yield x[idx], y[idx], idx


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, nesterov=True, weight_decay=1e-4)


def train(model: nn.Module, opt: torch.optim.Optimizer, sched: Any, method: Method, epochs: range,
          data: tuple[torch.Tensor, torch.Tensor], *, on_step: Any = None, on_epoch_end: Any = None,
          **batch_kw: Any) -> list[torch.Tensor]:
    """The plain training loop of the method interface; returns the per-step losses."""
    losses = []
    model.train()
    for epoch in epochs:
        method.start_epoch(epoch)
        for x, y, idx in batches(data, epoch, **batch_kw):
            logits = model(x)
            loss = method.loss(logits, y, idx, model=model, inputs=x)
            opt.zero_grad()
            loss.backward()
            opt.step()
            method.end_step(model)
            if sched is not None:
                sched.step()
            losses.append(loss.detach())
            if on_step is not None:
                on_step(epoch, x, y, idx, logits)
        method.end_epoch(model)
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    return losses


def setup_run(name: str, seed: int = 0, epochs: int = 5, model: nn.Module | None = None, **hparams: Any):
    model = make_model(seed) if model is None else model
    opt = make_optimizer(model)
    method = create_method(name, num_samples=N, num_classes=C, **hparams)
    method.setup(model, epochs=epochs, steps_per_epoch=STEPS)
    sched = method.configure_lr_scheduler(opt, epochs=epochs, steps_per_epoch=STEPS)
    return model, opt, sched, method


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def model_with(state: dict[str, torch.Tensor]) -> nn.Module:
    m = make_model(99)
    m.load_state_dict(state)
    return m.eval()


def hand_kl(logits: torch.Tensor, teacher_probs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """KL(z ‖ softmax(logits / T)) summed over classes, divided by the batch size."""
    z = teacher_probs.double()
    log_p = torch.log_softmax(logits.detach().double() / T, dim=1)
    per = (torch.where(z > 0, z * z.log(), torch.zeros_like(z)) - z * log_p).sum(1)
    if mask is not None:
        per = per * mask.double()
    return per.sum() / logits.shape[0]


def assert_same(a: Any, b: Any, where: str = "state") -> None:
    """Exact recursive equality of nested dicts/lists/tensors."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys differ"
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), f"{where}: lengths differ"
        for i, (u, v) in enumerate(zip(a, b)):
            assert_same(u, v, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), f"{where}: tensors differ"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


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
    assert closed == pytest.approx([cyclic_cosine_lr(s, LR, cycle, eta) for s in range(5 * STEPS)])

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
    assert (method.lambda_long, method.lambda_short, method.temperature) == (2.4, 4.0, 2.0)
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
    target, mask = method.soft_targets(y, idx, 0.4)
    assert mask.all()
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


# ----------------------------------------------------------------------------- registry-wide
# Small settings so that the boundary logic runs within 5 epochs (mini-generations of 2 epochs).
SETTINGS: dict[str, dict[str, Any]] = {
    "lstsd": {"generation_epochs": 2},
    "lstsd_wo_long": {"generation_epochs": 2},
    "lstsd_wo_short": {"generation_epochs": 2},
    "lstsd_single": {"generation_epochs": 2},
    "mean_teacher": {"ema_decay": 0.9},
    "temporal_ensembling": {"rampup_epochs": 2},
    "snapshot_ensembles": {"cycle_epochs": 2},
    "snapshot_distillation": {"cycle_epochs": 2},
}
DEFAULT_SETTINGS: dict[str, Any] = {}
# A setting that differs from SETTINGS, per method (every method is also tried with another num_samples).
OTHER_SETTINGS: dict[str, dict[str, Any]] = {
    "lstsd": {"generation_epochs": 3},
    "lstsd_wo_long": {"lambda_short": 1.0},
    "lstsd_wo_short": {"lambda_long": 1.0},
    "lstsd_single": {"lambda_long": 1.0},
    "mean_teacher": {"ema_decay": 0.99},
    "temporal_ensembling": {"ensemble_momentum": 0.5},
    "snapshot_ensembles": {"max_snapshots": 1},
    "snapshot_distillation": {"cycle_epochs": 3},
    "ps_kd": {"alpha_T": 0.5},
    "label_smoothing": {"smoothing": 0.2},
}
EPOCHS, RESUME_AT = 5, 3            # resume inside the second mini-generation (epochs 2-3)


@pytest.mark.parametrize("name", available_methods())
def test_resume_from_checkpoint_is_exact(name: str, tmp_path: Path):
    settings = {**DEFAULT_SETTINGS, **SETTINGS.get(name, {})}
    data = make_data()
    ref_model, ref_opt, ref_sched, ref_method = setup_run(name, epochs=EPOCHS, **settings)
    full = train(ref_model, ref_opt, ref_sched, ref_method, range(EPOCHS), data)        # uninterrupted

    model, opt, sched, method = setup_run(name, epochs=EPOCHS, **settings)
    first = train(model, opt, sched, method, range(RESUME_AT), data)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": None if sched is None else sched.state_dict(), "method": method.state_dict()}, path)
    del model, opt, sched, method

    ckpt = torch.load(path, weights_only=True)
    model, opt, sched, method = setup_run(name, seed=7, epochs=EPOCHS, **settings)   # fresh objects
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    if sched is not None:
        sched.load_state_dict(ckpt["scheduler"])
    method.load_state_dict(ckpt["method"])
    rest = train(model, opt, sched, method, range(RESUME_AT, EPOCHS), data)

    assert len(first) + len(rest) == len(full)
    assert_same(torch.stack(first + rest), torch.stack(full), "losses")
    assert_same(weights(model), weights(ref_model), "weights")
    assert_same(method.state_dict(), ref_method.state_dict(), "method")
    assert_same(method.loss_components(), ref_method.loss_components(), "loss_components")
    model.eval()
    ref_model.eval()
    assert_same(method.eval_predictions(model, data[0]), ref_method.eval_predictions(ref_model, data[0]),
                "eval_predictions")


@pytest.mark.parametrize("name", available_methods())
def test_extra_forward_passes_matches_the_forwards_run(name: str):
    calls = [0]
    model = make_model()
    model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))   # teacher copies share it
    model, opt, sched, method = setup_run(name, epochs=EPOCHS, model=model, **SETTINGS.get(name, DEFAULT_SETTINGS))
    per_step: list[int] = []

    def on_step(epoch, *_: Any) -> None:
        if epoch == EPOCHS - 1:
            per_step.append(calls[0])

    train(model, opt, sched, method, range(EPOCHS), make_data(), on_step=on_step)
    forwards = [b - a for a, b in zip(per_step, per_step[1:])]
    assert forwards and all(f == 1 + method.extra_forward_passes for f in forwards), (name, forwards)
    if method.extra_forward_passes:
        assert method.needs_model_inputs


@pytest.mark.parametrize("name", available_methods())
def test_checkpoint_from_other_settings_is_refused(name: str):
    settings = SETTINGS.get(name, DEFAULT_SETTINGS)
    model, opt, sched, method = setup_run(name, epochs=EPOCHS, **settings)
    train(model, opt, sched, method, range(1), make_data())
    state = method.state_dict()
    alternatives = [({"num_samples": N + 1}, {})]
    if name in OTHER_SETTINGS:
        alternatives.append(({}, {**settings, **OTHER_SETTINGS[name]}))
    for base_kw, hp in alternatives:
        other = create_method(name, num_samples=base_kw.get("num_samples", N), num_classes=C,
                              **(hp or settings))
        other.setup(make_model(), epochs=EPOCHS, steps_per_epoch=STEPS)
        with pytest.raises(ValueError, match="other settings"):
            other.load_state_dict(state)
    if name == "ps_kd":                    # the run's length is a setting too
        other = create_method(name, num_samples=N, num_classes=C)
        other.setup(make_model(), epochs=EPOCHS + 1)
        with pytest.raises(ValueError, match="epochs"):
            other.load_state_dict(state)


BAD_SETTINGS = [
    ("mean_teacher", {"ema_decay": 1.5}), ("mean_teacher", {"lambda_teacher": -1.0}),
    ("mean_teacher", {"temperature": 0.0}), ("mean_teacher", {"kl_direction": "forward"}),
    ("temporal_ensembling", {"ensemble_momentum": 1.0}), ("temporal_ensembling", {"rampup_epochs": -1}),
    ("snapshot_ensembles", {"cycle_epochs": 0}), ("snapshot_ensembles", {"max_snapshots": 0}),
    ("snapshot_ensembles", {"eta_min": -0.1}), ("snapshot_distillation", {"lambda_teacher": float("nan")}),
    ("snapshot_distillation", {"cycle_epochs": 1.5}), ("lstsd_single", {"generation_epochs": 0}),
    ("lstsd_single", {"lambda_short": -2.0}), ("ps_kd", {"alpha_T": 1.5}),
    ("label_smoothing", {"smoothing": -0.1}), ("label_smoothing", {"smoothing": 2.0}),
]


@pytest.mark.parametrize(("name", "bad"), BAD_SETTINGS)
def test_invalid_hyper_parameters_are_refused(name: str, bad: dict[str, Any]):
    key = next(iter(bad))
    with pytest.raises(ValueError, match="direction" if key == "kl_direction" else key):
        create_method(name, num_samples=N, num_classes=C, **bad)


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
