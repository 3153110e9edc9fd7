"""LSTSD against Algorithm 1, computed independently by hand for every (epoch, sample)."""

import math

import pytest
import torch

import lstsd
from lstsd import LSTSD
from lstsd.methods import create_method
from toy import assert_same, index_batches, make_data, run_epochs, setup_run, train, weights

N, C, BATCH = 11, 4, 4   # 11 samples: the last batch of each epoch is smaller


def logit_table(epochs: int, seed: int = 0) -> torch.Tensor:
    """The stand-in network: its logits for sample i in epoch e are table[e, i]."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(epochs, N, C, generator=g, dtype=torch.float64).float() * 2


def batches(epoch: int, seed: int = 0, drop: int = 0) -> list[torch.Tensor]:
    return index_batches(N, BATCH, epoch, seed=seed, drop=drop)


def softmax_list(row, t):
    vals = [float(v) / t for v in row]
    m = max(vals)
    exps = [math.exp(v - m) for v in vals]
    s = sum(exps)
    return [e / s for e in exps]


def kl(z, logits_row, t):
    p = softmax_list(logits_row, t)
    return sum(zc * (math.log(zc) - math.log(pc)) for zc, pc in zip(z, p) if zc > 0)


def ce(logits_row, y):
    return -math.log(softmax_list(logits_row, 1.0)[y])


def hand_loss(table, epoch, idx, y, E, lam_l, lam_s, t, seen):
    """Algorithm 1 by hand. ``seen[e]`` = the samples trained on in epoch e."""
    rows = idx.tolist()
    b = len(rows)
    loss_c = sum(ce(table[epoch, i], int(y[i])) for i in rows) / b
    if epoch // E == 0:
        return loss_c
    prev_epoch = epoch - 1                              # short-term: recorded in the previous epoch
    long_epoch = (epoch // E) * E - 1                   # long-term: last epoch of the previous mini-gen
    loss_l = sum(kl(softmax_list(table[long_epoch, i], t), table[epoch, i], t)
                 for i in rows if i in seen[long_epoch]) / b
    loss_s = sum(kl(softmax_list(table[prev_epoch, i], t), table[epoch, i], t)
                 for i in rows if i in seen[prev_epoch]) / b
    return loss_c + lam_l * loss_l + lam_s * loss_s


@pytest.mark.parametrize("E,epochs", [(2, 7), (3, 8), (1, 3)])
def test_algorithm_1_end_to_end(E, epochs):
    table = logit_table(epochs)
    y = torch.randint(0, C, (N,), generator=torch.Generator().manual_seed(5))
    method = LSTSD(N, C, generation_epochs=E, lambda_long=2.4, lambda_short=4.0, temperature=2.0,
                   bank_dtype=torch.float32)
    seen: dict[int, set[int]] = {}
    checked_distillation = 0
    for epoch in range(epochs):
        method.start_epoch(epoch)
        seen[epoch] = set()
        for idx in batches(epoch):
            logits = table[epoch, idx].clone().requires_grad_()
            loss = method.loss(logits, y[idx], idx)
            seen[epoch].update(idx.tolist())
            want = hand_loss(table, epoch, idx, y, E, 2.4, 4.0, 2.0, seen)
            assert loss.item() == pytest.approx(want, rel=1e-5, abs=1e-6), (epoch, idx.tolist())
            parts = method.loss_components()
            if epoch // E == 0:
                assert parts["long"].item() == 0 and parts["short"].item() == 0
                assert loss.item() == pytest.approx(parts["ce"].item())
            else:
                checked_distillation += 1
                assert parts["long"].item() > 0 and parts["short"].item() > 0
            loss.backward()
            assert logits.grad is not None
        method.end_epoch()
    assert checked_distillation > 0


def test_targets_read_are_the_recorded_softmaxes():
    """Inspect the banks directly: z^S = epoch e-1's softmax, z^L = last epoch of previous mini-gen."""
    E, epochs, t = 3, 8, 2.0
    table = logit_table(epochs, seed=3)
    y = torch.zeros(N, dtype=torch.long)
    method = LSTSD(N, C, generation_epochs=E, temperature=t, bank_dtype=torch.float32)
    for epoch in range(epochs):
        method.start_epoch(epoch)
        for idx in batches(epoch, seed=3):
            method.loss(table[epoch, idx], y[idx], idx)
        method.end_epoch()
        torch.testing.assert_close(method.short_term_bank.targets, torch.softmax(table[epoch] / t, dim=1))
        last_long = (epoch + 1) // E * E - 1
        if last_long >= 0:
            torch.testing.assert_close(method.long_term_bank.targets, torch.softmax(table[last_long] / t, dim=1))
        else:
            assert not method.long_term_bank.recorded.any()


def test_samples_without_recorded_target_get_no_distillation_term():
    E, epochs = 1, 3
    table = logit_table(epochs, seed=7)
    y = torch.randint(0, C, (N,), generator=torch.Generator().manual_seed(1))
    method = LSTSD(N, C, generation_epochs=E, bank_dtype=torch.float32)
    seen: dict[int, set[int]] = {}
    for epoch in range(epochs):
        method.start_epoch(epoch)
        seen[epoch] = set()
        # drop_last-style: three samples are skipped each epoch
        for idx in batches(epoch, seed=7, drop=3):
            loss = method.loss(table[epoch, idx], y[idx], idx)
            seen[epoch].update(idx.tolist())
            want = hand_loss(table, epoch, idx, y, E, 2.4, 4.0, 2.0, seen)
            # a sample unseen in the previous epoch must not use a stale or empty row;
            # the hand computation above only distils samples recorded earlier.
            if epoch == 1:
                assert loss.item() == pytest.approx(want, rel=1e-5)
        method.end_epoch()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_bank_dtypes_give_close_losses(dtype):
    E, epochs = 1, 3
    table = logit_table(epochs, seed=2)
    y = torch.randint(0, C, (N,), generator=torch.Generator().manual_seed(2))
    exact = LSTSD(N, C, generation_epochs=E, bank_dtype=torch.float32)
    other = LSTSD(N, C, generation_epochs=E, bank_dtype=dtype)
    for epoch in range(epochs):
        exact.start_epoch(epoch)
        other.start_epoch(epoch)
        for idx in batches(epoch):
            a = exact.loss(table[epoch, idx], y[idx], idx)
            b = other.loss(table[epoch, idx], y[idx], idx)
            assert b.item() == pytest.approx(a.item(), rel=2e-2, abs=1e-3)
        exact.end_epoch()
        other.end_epoch()
    assert other.short_term_bank.targets.dtype == dtype


def run_losses(method, table, y, epochs, start=0, seed=0):
    """The losses of ``method`` on the stand-in network ``table``, epochs ``start`` to ``epochs``."""
    return run_epochs(method, range(start, epochs), lambda epoch: batches(epoch, seed=seed),
                      lambda epoch, idx: method.loss(table[epoch, idx], y[idx], idx).item())


def test_state_dict_round_trip_mid_training_gives_identical_losses(tmp_path):
    epochs, split = 9, 4   # split inside the second mini-generation (E=3)
    table = logit_table(epochs, seed=4)
    y = torch.randint(0, C, (N,), generator=torch.Generator().manual_seed(4))
    straight = LSTSD(N, C, generation_epochs=3)
    want = run_losses(straight, table, y, epochs)

    first = LSTSD(N, C, generation_epochs=3)
    got = run_losses(first, table, y, split)
    torch.save(first.state_dict(), tmp_path / "method.pt")
    resumed = LSTSD(N, C, generation_epochs=3)
    resumed.load_state_dict(torch.load(tmp_path / "method.pt"))
    got += run_losses(resumed, table, y, epochs, start=split)
    assert got == want   # bit-identical


def test_load_state_dict_refuses_other_settings_or_method():
    saved = LSTSD(N, C, generation_epochs=3).state_dict()
    with pytest.raises(ValueError, match="generation_epochs"):
        LSTSD(N, C, generation_epochs=6).load_state_dict(saved)
    with pytest.raises(ValueError, match="num_samples"):
        LSTSD(N + 1, C, generation_epochs=3).load_state_dict(saved)
    with pytest.raises(ValueError, match="written by method"):
        create_method("vanilla", num_samples=N, num_classes=C).load_state_dict(saved)


@pytest.mark.parametrize("name,long_bank,short_bank", [("lstsd", True, True), ("lstsd_wo_long", False, True),
                                                       ("lstsd_wo_short", True, False)])
def test_ablations_do_not_allocate_the_unused_bank(name, long_bank, short_bank):
    method = create_method(name, num_samples=N, num_classes=C)
    assert (method.long_term_bank is not None) == long_bank
    assert (method.short_term_bank is not None) == short_bank


def test_ablation_matches_lstsd_with_zero_weight():
    epochs = 5
    table = logit_table(epochs, seed=6)
    y = torch.randint(0, C, (N,), generator=torch.Generator().manual_seed(6))
    a = run_losses(LSTSD(N, C, generation_epochs=2, lambda_long=0.0), table, y, epochs)
    b = run_losses(create_method("lstsd_wo_long", num_samples=N, num_classes=C, generation_epochs=2), table, y, epochs)
    c = run_losses(LSTSD(N, C, generation_epochs=2), table, y, epochs)
    assert a == b and a != c
    with pytest.raises(ValueError, match="fixes lambda_long=0"):
        create_method("lstsd_wo_long", num_samples=N, num_classes=C, lambda_long=1.0)


def test_t2_scaling_is_the_weights_times_t_squared():
    """t2_scale multiplies both KL terms by T²: the same loss as λL·T², λS·T² (so the study's λ
    sweep covers the T² reading, docs/results.md)."""
    epochs, t = 4, 2.0
    table = logit_table(epochs, seed=9)
    y = torch.randint(0, C, (N,), generator=torch.Generator().manual_seed(9))
    scaled = run_losses(LSTSD(N, C, generation_epochs=1, temperature=t, t2_scale=True), table, y, epochs)
    weights_x4 = run_losses(LSTSD(N, C, generation_epochs=1, temperature=t, lambda_long=2.4 * t * t,
                                  lambda_short=4.0 * t * t), table, y, epochs)
    assert scaled == pytest.approx(weights_x4, rel=1e-6)


def test_zero_weights_train_exactly_like_vanilla():
    """λL = λS = 0 is vanilla training, bit for bit: the λ-scale sweep's 0 point is the study's vanilla row."""
    data = make_data()
    runs = []
    for name, hparams in (("vanilla", {}), ("lstsd", dict(generation_epochs=1, lambda_long=0.0, lambda_short=0.0))):
        model, opt, sched, method = setup_run(name, epochs=4, **hparams)
        losses = train(model, opt, sched, method, range(4), data)
        runs.append((losses, weights(model)))
    assert [float(x) for x in runs[0][0]] == [float(x) for x in runs[1][0]]
    assert_same(runs[0][1], runs[1][1], "weights")


def test_t2_scale_and_direction_options_change_the_distillation_terms():
    epochs = 3
    table = logit_table(epochs, seed=8)
    y = torch.zeros(N, dtype=torch.long)
    base = run_losses(LSTSD(N, C, generation_epochs=1), table, y, epochs)
    scaled = run_losses(LSTSD(N, C, generation_epochs=1, t2_scale=True), table, y, epochs)
    reverse = run_losses(LSTSD(N, C, generation_epochs=1, kl_direction="student_teacher"), table, y, epochs)
    first = len(batches(0))
    assert base[:first] == scaled[:first] == reverse[:first]   # first mini-generation: CE only
    assert all(s > b for s, b in zip(scaled[first:], base[first:]))
    assert base[first:] != reverse[first:]


class TestBadInput:
    def make(self):
        method = LSTSD(N, C, generation_epochs=1)
        method.start_epoch(0)
        return method

    @pytest.mark.parametrize("indices,word", [
        (torch.tensor([0.0, 1.0]), "integers"),
        (torch.tensor([[0, 1]]), "1-D"),
        (torch.tensor([0, 1, 2]), "3 entries but the batch has 2"),
        (torch.tensor([0, N]), "outside"),
        (torch.tensor([-3, 0]), "outside"),
        (torch.tensor([2, 2]), "repeats"),
        ([0, 1], "torch.Tensor"),
    ])
    def test_bad_indices(self, indices, word):
        with pytest.raises(ValueError, match=word):
            self.make().loss(torch.randn(2, C), torch.tensor([0, 1]), indices)

    def test_bad_logits_and_targets(self):
        method = self.make()
        with pytest.raises(ValueError, match="num_classes=4"):
            method.loss(torch.randn(2, C + 1), torch.tensor([0, 1]), torch.tensor([0, 1]))
        with pytest.raises(ValueError, match="targets must have shape"):
            method.loss(torch.randn(2, C), torch.tensor([0, 1, 1]), torch.tensor([0, 1]))
        with pytest.raises(ValueError, match="outside"):
            method.loss(torch.randn(2, C), torch.tensor([0, C]), torch.tensor([0, 1]))
        with pytest.raises(ValueError, match="integer tensor"):
            method.loss(torch.randn(2, C), torch.tensor([0.0, 1.0]), torch.tensor([0, 1]))

    def test_epoch_protocol(self):
        method = LSTSD(N, C)
        with pytest.raises(RuntimeError, match="start_epoch"):
            method.loss(torch.randn(2, C), torch.tensor([0, 1]), torch.tensor([0, 1]))
        with pytest.raises(RuntimeError, match="start_epoch"):
            method.end_epoch()
        method.start_epoch(0)
        with pytest.raises(RuntimeError, match="still open"):
            method.start_epoch(1)
        method.end_epoch()
        with pytest.raises(ValueError, match="expected start_epoch\\(1\\)"):
            method.start_epoch(3)
        with pytest.warns(UserWarning, match="no history"):
            LSTSD(N, C).start_epoch(4)

    @pytest.mark.parametrize("kwargs,word", [
        (dict(generation_epochs=0), "generation_epochs"), (dict(lambda_long=-1), "lambda_long"),
        (dict(lambda_short=float("nan")), "lambda_short"), (dict(temperature=0), "temperature"),
        (dict(kl_direction="up"), "direction"), (dict(bank_dtype=torch.int32), "dtype"),
    ])
    def test_bad_settings(self, kwargs, word):
        with pytest.raises(ValueError, match=word):
            LSTSD(N, C, **kwargs)


def test_banks_follow_the_logits_device():
    method = LSTSD(N, C, device="cpu")
    method.start_epoch(0)
    method.loss(torch.randn(2, C), torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert method.short_term_bank.device.type == "cpu"
    if torch.cuda.is_available():  # pragma: no cover - exercised on GPU machines
        method.loss(torch.randn(2, C, device="cuda"), torch.tensor([2, 3], device="cuda"),
                    torch.tensor([2, 3], device="cuda"))
        assert method.short_term_bank.device.type == "cuda"


def test_gradient_of_the_full_loss_reaches_only_the_logits():
    method = LSTSD(N, C, generation_epochs=1)
    w = torch.randn(3, C, requires_grad=True)
    x = torch.randn(N, 3)
    for epoch in range(2):
        method.start_epoch(epoch)
        idx = torch.arange(N)
        loss = method.loss(x @ w, torch.zeros(N, dtype=torch.long), idx)
        loss.backward()
        method.end_epoch()
    assert w.grad is not None and torch.isfinite(w.grad).all()
    assert not method.short_term_bank.targets.requires_grad


def test_package_exports():
    assert lstsd.LSTSD is LSTSD
    assert {"vanilla", "lstsd", "lstsd_wo_long", "lstsd_wo_short"} <= set(lstsd.available_methods())


def test_topk_bank_with_k_equal_to_c_gives_the_dense_losses():
    epochs = 5
    table = logit_table(epochs, seed=11)
    y = torch.randint(0, C, (N,), generator=torch.Generator().manual_seed(11))
    dense = run_losses(LSTSD(N, C, generation_epochs=2), table, y, epochs)
    topk_all = run_losses(LSTSD(N, C, generation_epochs=2, bank_format="topk", bank_topk=C), table, y, epochs)
    topk_2 = run_losses(LSTSD(N, C, generation_epochs=2, bank_format="topk", bank_topk=2), table, y, epochs)
    assert topk_all == dense
    first = len(batches(0)) * 2                      # first mini-generation: CE only, the same
    assert topk_2[:first] == dense[:first] and topk_2[first:] != dense[first:]


# ----------------------------------------------------------------------------- when targets are recorded
def _one_step(record: str, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor):
    method = LSTSD(len(y), C, generation_epochs=1, temperature=2.0, bank_dtype="float32", record_targets=record)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    method.start_epoch(0)
    model.train()
    logits = model(x)
    loss = method.loss(logits, y, torch.arange(len(y)), model=model, inputs=x)
    opt.zero_grad()
    loss.backward()
    opt.step()
    method.end_step(model)
    method.end_epoch(model)
    return method, logits.detach()


def test_training_forward_records_the_logits_that_computed_the_loss():
    torch.manual_seed(0)
    model, x, y = torch.nn.Linear(3, C), torch.randn(6, 3), torch.randint(0, C, (6,))
    method, logits = _one_step("training_forward", model, x, y)
    torch.testing.assert_close(method.short_term_bank.targets, torch.softmax(logits / 2, 1))
    assert method.extra_forward_passes == 0


def test_after_update_records_f_x_theta_of_the_updated_network():
    torch.manual_seed(0)
    model, x, y = torch.nn.Linear(3, C), torch.randn(6, 3), torch.randint(0, C, (6,))
    method, before = _one_step("after_update_eval", model, x, y)
    after = model(x).detach()
    assert not torch.allclose(after, before)                       # the update changed the network
    torch.testing.assert_close(method.short_term_bank.targets, torch.softmax(after / 2, 1))
    assert method.extra_forward_passes == 1 and method.needs_model_inputs


def test_after_update_train_uses_batch_statistics_and_leaves_running_statistics_alone():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, C))
    x, y = torch.randn(6, 3), torch.randint(0, C, (6,))
    norm = model[1]
    method, _ = _one_step("after_update_train", model, x, y)
    # One training forward moved the running mean once (momentum 0.1); the recording forward must not.
    stats = (norm.running_mean.clone(), norm.running_var.clone(), int(norm.num_batches_tracked))
    assert stats[2] == 1
    model.train()
    with torch.no_grad():
        norm.momentum, saved = 0.0, norm.momentum
        want = torch.softmax(model(x) / 2, 1)                      # train mode: batch statistics
        norm.momentum = saved
    torch.testing.assert_close(method.short_term_bank.targets, want)
    eval_method, _ = _one_step("after_update_eval", model, x, y)
    assert not torch.allclose(eval_method.short_term_bank.targets, want)


def test_after_update_needs_inputs_and_end_step():
    method = LSTSD(N, C, generation_epochs=1, record_targets="after_update_eval")
    method.start_epoch(0)
    with pytest.raises(ValueError, match="inputs="):
        method.loss(torch.randn(2, C), torch.tensor([0, 1]), torch.tensor([0, 1]))
    method.loss(torch.randn(2, C), torch.tensor([0, 1]), torch.tensor([0, 1]), inputs=torch.randn(2, 3))
    with pytest.raises(RuntimeError, match="end_step"):
        method.end_epoch()
    with pytest.raises(ValueError, match="record_targets"):
        LSTSD(N, C, record_targets="later")


def test_after_update_records_every_batch_accumulated_before_the_step():
    torch.manual_seed(0)
    model, x, y = torch.nn.Linear(3, C), torch.randn(8, 3), torch.randint(0, C, (8,))
    method = LSTSD(8, C, generation_epochs=1, bank_dtype="float32", record_targets="after_update_eval")
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    method.start_epoch(0)
    opt.zero_grad()
    for half in (slice(0, 4), slice(4, 8)):              # two micro-batches, one optimizer step
        method.loss(model(x[half]), y[half], torch.arange(8)[half], model=model, inputs=x[half]).backward()
    opt.step()
    method.end_step(model)
    method.end_epoch(model)
    assert method.short_term_bank.recorded.all()
    torch.testing.assert_close(method.short_term_bank.targets, torch.softmax(model(x).detach() / 2, 1))


# ------------------------------------------------------------------ ramp-up (an option, not the paper)
@pytest.mark.parametrize("E,R", [(2, 3), (1, 2)])
def test_rampup_scales_both_weights_by_the_gaussian_ramp_from_the_first_distilled_epoch(E, R):
    """Algorithm 1 by hand with λ^L, λ^S × exp(−5·(1 − k/R)²) in the k-th distilled epoch."""
    epochs = E + R + 2
    table = logit_table(epochs, seed=11)
    y = torch.randint(0, C, (N,), generator=torch.Generator().manual_seed(11))
    method = LSTSD(N, C, generation_epochs=E, temperature=2.0, bank_dtype=torch.float32, rampup_epochs=R)
    seen: dict[int, set[int]] = {}
    scales = []
    for epoch in range(epochs):
        k = epoch - E
        scale = 0.0 if k < 0 else math.exp(-5 * (1 - min(k / R, 1.0)) ** 2)
        scales.append(method.weight_scale(epoch))
        assert scales[-1] == pytest.approx(scale)
        method.start_epoch(epoch)
        seen[epoch] = set()
        for idx in batches(epoch, seed=11):
            loss = method.loss(table[epoch, idx], y[idx], idx)
            seen[epoch].update(idx.tolist())
            want = hand_loss(table, epoch, idx, y, E, 2.4 * scale, 4.0 * scale, 2.0, seen)
            assert loss.item() == pytest.approx(want, rel=1e-5, abs=1e-6), (epoch, idx.tolist())
        method.end_epoch()
    assert 0 < scales[E] < 0.01 and scales[E:] == sorted(scales[E:]) and scales[-1] == 1.0


@pytest.mark.parametrize("name", ["lstsd", "lstsd_single"])
def test_rampup_total_is_ce_plus_the_scaled_terms_and_zero_means_the_paper(name):
    data = make_data()
    model, opt, sched, method = setup_run(name, epochs=5, generation_epochs=1, rampup_epochs=3)
    checked = []

    def on_step(epoch, *_):
        p = method.loss_components()
        scale = method.weight_scale(epoch)
        want = p["ce"] + scale * (method.lambda_long * p["long"] + method.lambda_short * p["short"])
        assert p["total"].item() == pytest.approx(want.item(), rel=1e-5)
        checked.append(scale)

    train(model, opt, sched, method, range(5), data, on_step=on_step)
    assert 0 < min(s for s in checked if s > 0) < 0.01 and checked[-1] == 1.0
    paper = setup_run(name, epochs=5, generation_epochs=1)[3]
    assert [paper.weight_scale(e) for e in range(4)] == [0.0, 1.0, 1.0, 1.0]


def test_rampup_is_a_checked_setting_and_old_checkpoints_read_as_without_it():
    with pytest.raises(ValueError, match="rampup_epochs must be an int >= 0"):
        LSTSD(N, C, rampup_epochs=-1)
    saved = LSTSD(N, C, generation_epochs=3).state_dict()
    with pytest.raises(ValueError, match="rampup_epochs: saved 0 vs now 2"):
        LSTSD(N, C, generation_epochs=3, rampup_epochs=2).load_state_dict(saved)
    # A checkpoint written before the option existed has no rampup_epochs: it was trained without.
    del saved["_extra_state"]["hparams"]["rampup_epochs"]
    LSTSD(N, C, generation_epochs=3).load_state_dict(saved)
    with pytest.raises(ValueError, match="rampup_epochs: saved 0 vs now 1"):
        LSTSD(N, C, generation_epochs=3, rampup_epochs=1).load_state_dict(saved)
