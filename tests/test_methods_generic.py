"""Generic tests over every registered method (Composer-style): what each method declares it needs
matches what it does, exact resume, forward-pass counts, refusal of checkpoints from other settings,
refusal of bad settings, state that follows the device, loss parts that add up to the loss.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from lstsd.methods import Method, available_methods, create_method
from method_settings import BAD_SETTINGS, EPOCHS, OTHER_SETTINGS, RESUME_AT, settings_of
from toy import STEPS, C, N, assert_same, make_data, make_model, setup_run, train, weights


def built(name: str, **extra: Any) -> Method:
    return create_method(name, num_samples=N, num_classes=C, **settings_of(name), **extra)


# Methods by what they declare (class attributes, read from an instance: some factories are functions).
PER_SAMPLE_STATE = [n for n in available_methods() if built(n).keeps_per_sample_state]


def trained(name: str, **extra: Any) -> tuple[torch.nn.Module, Method]:
    model, opt, sched, method = setup_run(name, epochs=EPOCHS, **settings_of(name), **extra)
    train(model, opt, sched, method, range(EPOCHS), make_data())
    return model, method


# ----------------------------------------------------------------------------- declarations
@pytest.mark.parametrize("name", available_methods())
def test_needs_indices_is_declared_as_the_method_behaves(name: str):
    # A method that keeps per-sample state but forgets to declare needs_indices would get None here
    # and fail inside its bank instead of with Method.loss's one-line error; one that declares it
    # without needing it would refuse a batch it could train on.
    model, _, _, method = setup_run(name, epochs=EPOCHS, **settings_of(name))
    method.start_epoch(0)
    x, y = make_data()
    if method.needs_indices:
        with pytest.raises(ValueError, match="needs each sample's index"):
            method.loss(model(x[:4]), y[:4], None, model=model, inputs=x[:4])
    else:
        assert torch.isfinite(method.loss(model(x[:4]), y[:4], None, model=model, inputs=x[:4]))
    assert method.needs_indices or not method.keeps_per_sample_state


@pytest.mark.parametrize("name", available_methods())
def test_keeps_per_sample_state_is_declared_as_the_method_behaves(name: str):
    _, method = trained(name)
    per_sample = [k for k, v in method.state_dict().items()
                  if isinstance(v, torch.Tensor) and v.dim() and v.shape[0] == N]
    assert bool(per_sample) == method.keeps_per_sample_state, (name, per_sample)


@pytest.mark.parametrize("name", available_methods())
def test_schedules_lr_is_declared_as_the_method_behaves(name: str):
    _, _, sched, method = setup_run(name, epochs=EPOCHS, **settings_of(name))
    assert (sched is not None) == method.schedules_lr


@pytest.mark.parametrize("name", available_methods())
def test_copies_network_is_declared_as_the_method_behaves(name: str):
    model, method = trained(name)
    shapes = sorted(tuple(p.shape) for p in model.parameters())
    copies = [m for m in method.modules()
              if m is not method and sorted(tuple(p.shape) for p in m.parameters()) == shapes]
    assert bool(copies) == method.copies_network, name


@pytest.mark.parametrize("name", available_methods())
def test_needs_model_inputs_is_declared_as_the_method_behaves(name: str):
    # Refused without inputs in every epoch (not only once a teacher exists), so a missing
    # inputs= fails at the first step; a method that does not declare it trains without them.
    model, _, _, method = setup_run(name, epochs=EPOCHS, **settings_of(name))
    method.start_epoch(0)
    x, y = make_data()
    if method.needs_model_inputs:
        with pytest.raises(ValueError, match="inputs"):
            method.loss(model(x[:4]), y[:4], torch.arange(4))
    else:
        method.loss(model(x[:4]), y[:4], torch.arange(4))


@pytest.mark.parametrize("name", available_methods())
def test_the_loss_is_the_weighted_sum_of_its_parts(name: str):
    # What report plots rely on: total == Σ weight·part, every step (PS-KD from its second epoch,
    # when every sample has a recorded prediction), with the weights the method's schedules give.
    model, opt, sched, method = setup_run(name, epochs=EPOCHS, **settings_of(name))
    checked: list[dict[str, float]] = []

    def on_step(epoch: int, *_: Any) -> None:
        parts, weights = method.loss_components(), method.loss_weights()
        assert set(parts) == set(weights) | {"total"}, (name, sorted(parts), sorted(weights))
        if name == "ps_kd" and epoch == 0:
            return
        total = sum(w * parts[k].item() for k, w in weights.items())
        assert total == pytest.approx(parts["total"].item(), rel=1e-5, abs=1e-6), (name, epoch, weights)
        checked.append(weights)

    train(model, opt, sched, method, range(EPOCHS), make_data(), on_step=on_step)
    assert checked
    distilled = [w for w in checked if any(v > 0 for k, v in w.items() if k != "ce")]
    if getattr(method, "distillation", None) is not None:   # its teachers teach by the last epoch
        assert distilled, name


# Small settings so that the boundary logic runs within 5 epochs (mini-generations of 2 epochs).
@pytest.mark.parametrize("name", available_methods())
def test_resume_from_checkpoint_is_exact(name: str, tmp_path: Path):
    settings = settings_of(name)
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


@pytest.mark.parametrize("name,extra", [(n, {}) for n in available_methods()] + [
    ("lstsd", {"record_targets": "after_update_train"}), ("lstsd", {"record_targets": "after_update_eval"})])
def test_extra_forward_passes_matches_the_forwards_run(name: str, extra: dict[str, Any]):
    calls = [0]
    model = make_model()
    model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))   # teacher copies share it
    model, opt, sched, method = setup_run(name, epochs=EPOCHS, model=model, **settings_of(name), **extra)
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
    settings = settings_of(name)
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


@pytest.mark.parametrize(("name", "bad"), BAD_SETTINGS)
def test_invalid_hyper_parameters_are_refused(name: str, bad: dict[str, Any]):
    key = next(iter(bad))
    with pytest.raises(ValueError, match="direction" if key == "kl_direction" else key):
        create_method(name, num_samples=N, num_classes=C, **bad)


@pytest.mark.parametrize("name", PER_SAMPLE_STATE)
def test_per_sample_state_follows_the_logits_device(name: str):
    # The "meta" device stands in for an accelerator: a method built on the CPU must move its banks
    # and counters to wherever the logits are, by itself, and return a loss there.
    method = create_method(name, num_samples=N, num_classes=C, validate=False, **settings_of(name))
    method.setup(make_model(), epochs=EPOCHS, steps_per_epoch=STEPS)
    assert len(list(method.buffers())) > 0
    method.start_epoch(0)
    idx = torch.arange(4, device="meta")
    loss = method.loss(torch.randn(4, C, device="meta"), torch.zeros(4, dtype=torch.long, device="meta"), idx)
    assert loss.device.type == "meta"
    assert {b.device.type for b in method.buffers()} == {"meta"}


@pytest.mark.parametrize("name", available_methods())
def test_to_moves_every_tensor_of_the_state(name: str):
    model, opt, sched, method = setup_run(name, epochs=EPOCHS, **settings_of(name))
    train(model, opt, sched, method, range(EPOCHS), make_data())   # teachers and snapshots exist now
    assert method.to("meta") is method
    tensors = [v for v in method.state_dict().values() if isinstance(v, torch.Tensor)]
    assert all(t.device.type == "meta" for t in tensors), name


@pytest.mark.parametrize("name", available_methods())
def test_method_inside_a_user_module_saves_and_checks_its_settings(name: str):
    # A method registered as a submodule (as a LightningModule attribute would be) still refuses a
    # checkpoint from other settings: the check runs in _load_from_state_dict, not load_state_dict.
    holder = torch.nn.Module()
    model, opt, sched, holder.method = setup_run(name, epochs=EPOCHS, **settings_of(name))
    train(model, opt, sched, holder.method, range(EPOCHS), make_data())
    saved = holder.state_dict()
    assert "method._extra_state" in saved

    again = torch.nn.Module()
    _, _, _, again.method = setup_run(name, epochs=EPOCHS, **settings_of(name))
    again.load_state_dict(saved)
    assert_same(again.method.state_dict(), holder.method.state_dict(), "method")

    other = torch.nn.Module()
    other.method = create_method(name, num_samples=N + 1, num_classes=C, **settings_of(name))
    other.method.setup(make_model(), epochs=EPOCHS, steps_per_epoch=STEPS)
    with pytest.raises(ValueError, match="other settings"):
        other.load_state_dict(saved)


@pytest.mark.parametrize("name", ["lstsd_single", "snapshot_distillation", "snapshot_ensembles", "mean_teacher"])
def test_teacher_snapshots_need_setup_before_loading(name: str):
    model, opt, sched, method = setup_run(name, epochs=EPOCHS, **settings_of(name))
    train(model, opt, sched, method, range(EPOCHS), make_data())
    fresh = create_method(name, num_samples=N, num_classes=C, **settings_of(name))
    with pytest.raises(RuntimeError, match=r"setup\(model\)"):
        fresh.load_state_dict(method.state_dict())


def test_a_state_dict_that_is_not_a_method_s_is_refused():
    method = create_method("lstsd", num_samples=N, num_classes=C)
    with pytest.raises(ValueError, match="not a method state_dict"):
        method.load_state_dict({"long_term_bank.targets": torch.zeros(N, C)})


@pytest.mark.parametrize("name", available_methods())
def test_distillation_settings_are_reported_the_same_way(name: str):
    method = create_method(name, num_samples=N, num_classes=C)
    hparams = method.hparams()
    keys = ("temperature", "kl_direction", "t2_scale")
    distillation = getattr(method, "distillation", None)
    if distillation is not None:
        assert {k: hparams[k] for k in keys} == distillation.hparams()
    else:   # a method without distillation reports no distillation setting and never weighs a KL term
        assert not set(keys) & set(hparams), name
        _, trained_method = trained(name)
        assert not {"long", "short"} & set(trained_method.loss_weights()), name
    generations = getattr(method, "generations", None)
    if generations is not None:
        assert generations.length in (hparams.get("generation_epochs"), hparams.get("cycle_epochs"))
    else:
        assert not {"generation_epochs", "cycle_epochs"} & set(hparams), name


@pytest.mark.parametrize("validate", [True, False])
@pytest.mark.parametrize("name", PER_SAMPLE_STATE)
def test_non_finite_logits_never_reach_a_bank(name: str, validate: bool):
    method = create_method(name, num_samples=N, num_classes=C, validate=validate, **settings_of(name))
    method.setup(make_model(), epochs=EPOCHS, steps_per_epoch=STEPS)
    method.start_epoch(0)
    y = torch.zeros(4, dtype=torch.long)
    method.loss(torch.randn(4, C), y, torch.arange(4))            # rows 0-3 recorded
    before = {k: v.clone() for k, v in method.state_dict().items() if isinstance(v, torch.Tensor)}
    poisoned = torch.randn(4, C)
    poisoned[1, 2] = float("nan")
    poisoned[3, 0] = float("inf")
    if validate:
        with pytest.raises(ValueError, match="NaN or infinite.*nothing was recorded"):
            method.loss(poisoned, y, torch.tensor([0, 1, 5, 6]))
    else:                                                           # the trusted path guards on the device
        method.loss(poisoned, y, torch.tensor([0, 1, 5, 6]))
    after = method.state_dict()
    for key, old in before.items():
        assert torch.isfinite(after[key].float()).all(), f"{key} holds a non-finite value"
        if "counts" in key or "recorded" in key:
            continue
        rows = after[key][[1, 6]] if after[key].dim() else after[key]
        assert torch.equal(rows, old[[1, 6]]), f"{key}: a non-finite row was written"
    if not validate:   # the finite rows of the batch were written (in banks written this epoch)
        recorded = [v for k, v in after.items() if k.endswith("recorded") and bool(v[0])]
        assert all(bool(r[5]) and not bool(r[6]) for r in recorded)
