"""SoftTargetBank: storage, masks, state round trips and every validation error."""

import math

import pytest
import torch

from lstsd import LSTSD, SoftTargetBank
from lstsd.bank import TopKBank, make_bank


def probs(rows: int, classes: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(rows, classes, generator=g), dim=1)


@pytest.mark.parametrize("dtype,atol", [(torch.float32, 0.0), (torch.float16, 1e-3), (torch.bfloat16, 8e-3)])
def test_write_then_read_returns_float32_targets_and_mask(dtype, atol):
    bank = SoftTargetBank(6, 4, dtype=dtype)
    p = probs(3, 4)
    bank.write(torch.tensor([5, 0, 2]), p)
    targets, recorded = bank.read(torch.tensor([0, 1, 2, 5]))
    assert targets.dtype == torch.float32
    assert recorded.tolist() == [True, False, True, True]
    torch.testing.assert_close(targets[[0, 2, 3]], p[[1, 2, 0]], atol=atol, rtol=0)
    assert targets[1].abs().sum() == 0
    assert bank.targets.dtype == dtype


def test_write_overwrites_rows():
    bank = SoftTargetBank(3, 2, dtype=torch.float32)
    bank.write(torch.tensor([1]), torch.tensor([[0.25, 0.75]]))
    bank.write(torch.tensor([1]), torch.tensor([[0.5, 0.5]]))
    assert bank.read(torch.tensor([1]))[0].tolist() == [[0.5, 0.5]]


def test_read_accepts_repeated_indices():
    bank = SoftTargetBank(3, 2, dtype=torch.float32)
    bank.write(torch.tensor([0]), torch.tensor([[0.25, 0.75]]))
    targets, recorded = bank.read(torch.tensor([0, 0]))
    assert recorded.tolist() == [True, True] and targets[1].tolist() == [0.25, 0.75]


def test_state_dict_round_trip():
    bank = SoftTargetBank(5, 3, dtype=torch.bfloat16)
    bank.write(torch.tensor([4, 1]), probs(2, 3))
    other = SoftTargetBank(5, 3, dtype=torch.bfloat16)
    other.load_state_dict(bank.state_dict())
    assert torch.equal(other.targets, bank.targets) and torch.equal(other.recorded, bank.recorded)
    assert other.recorded.sum() == 2


@pytest.mark.parametrize("kwargs,word", [(dict(num_samples=6, num_classes=3), "num_samples"),
                                         (dict(num_samples=5, num_classes=4), "num_classes"),
                                         (dict(num_samples=5, num_classes=3, dtype=torch.float32), "dtype")])
def test_load_state_dict_refuses_other_shape_or_dtype(kwargs, word):
    saved = SoftTargetBank(5, 3, dtype=torch.float16).state_dict()
    with pytest.raises(ValueError, match=word):
        SoftTargetBank(**kwargs).load_state_dict(saved)


def test_load_state_dict_refuses_foreign_dict():
    with pytest.raises(RuntimeError, match="(?s)SoftTargetBank.*Missing key"):
        SoftTargetBank(5, 3).load_state_dict({"weight": torch.zeros(3)})


def test_bank_is_a_module_whose_buffers_move_and_save():
    bank = SoftTargetBank(5, 3, dtype="float32")
    assert set(dict(bank.named_buffers())) == {"targets", "recorded"}
    moved = bank.to("meta")                               # any device: .to() moves both buffers
    assert moved is bank and bank.device.type == "meta" and bank.recorded.device.type == "meta"


@pytest.mark.parametrize("indices,word", [
    ([0, 1], "torch.Tensor"),
    (torch.tensor([0.0, 1.0]), "integers"),
    (torch.tensor([[0, 1]]), "1-D"),
    (torch.tensor([0, 6]), "outside"),
    (torch.tensor([-1, 2]), "outside"),
    (torch.tensor([3, 3]), "repeats"),
])
def test_write_rejects_bad_indices(indices, word):
    bank = SoftTargetBank(6, 3)
    with pytest.raises(ValueError, match=word):
        bank.write(indices, probs(2, 3))


@pytest.mark.parametrize("bad,word", [
    (probs(3, 3), "shape"),
    (probs(2, 4), "shape"),
    (torch.tensor([[0.5, float("nan"), 0.5], [1.0, 0.0, 0.0]]), "NaN"),
    (torch.tensor([[0.5, float("inf"), 0.5], [1.0, 0.0, 0.0]]), "NaN or infinite"),
    (torch.tensor([[2.0, 1.0, -1.0], [1.0, 0.0, 0.0]]), "negative"),
    (torch.tensor([[0.5, 0.4, 0.3], [1.0, 0.0, 0.0]]), "sum to 1"),
    (torch.tensor([[1, 0, 0], [0, 1, 0]]), "floating-point"),
])
def test_write_rejects_bad_probabilities(bad, word):
    bank = SoftTargetBank(6, 3)
    with pytest.raises(ValueError, match=word):
        bank.write(torch.tensor([0, 1]), bad)
    assert not bank.recorded.any()  # nothing was written


def test_read_rejects_out_of_range():
    with pytest.raises(ValueError, match="outside"):
        SoftTargetBank(4, 3).read(torch.tensor([4]))


@pytest.mark.parametrize("kwargs", [dict(num_samples=0, num_classes=3), dict(num_samples=3, num_classes=1),
                                    dict(num_samples=3, num_classes=3, dtype=torch.int8)])
def test_constructor_validation(kwargs):
    with pytest.raises(ValueError):
        SoftTargetBank(**kwargs)


def test_half_precision_row_sums_within_tolerance_accepted():
    p = probs(4, 10).to(torch.bfloat16)
    bank = SoftTargetBank(4, 10, dtype=torch.bfloat16)
    bank.write(torch.arange(4), p)
    assert bank.recorded.all()


def test_dtype_by_name_as_configs_give_it():
    assert SoftTargetBank(2, 2, dtype="bfloat16").targets.dtype == torch.bfloat16
    from lstsd import LSTSD
    assert LSTSD(4, 3, bank_dtype="float32").short_term_bank.targets.dtype == torch.float32
    with pytest.raises(ValueError, match="bank dtype must be one of"):
        SoftTargetBank(2, 2, dtype="float8")


# ----------------------------------------------------------------------------- top-k format
def test_topk_with_k_equal_to_c_reads_exactly_like_dense():
    p = probs(6, 7, seed=3)
    dense, topk = SoftTargetBank(6, 7), TopKBank(6, 7, k=7)
    idx = torch.tensor([5, 0, 3, 1, 2, 4])
    dense.write(idx, p)
    topk.write(idx, p)
    assert torch.equal(dense.read(idx)[0], topk.read(idx)[0])


@pytest.mark.parametrize("k", [1, 2, 4])
def test_topk_row_is_a_distribution_with_the_leftover_spread_uniformly(k):
    p = probs(3, 6, seed=k)
    bank = TopKBank(3, 6, k=k, dtype=torch.float32)
    bank.write(torch.arange(3), p)
    got, recorded = bank.read(torch.arange(3))
    assert recorded.all() and (got > 0).all()
    torch.testing.assert_close(got.sum(1), torch.ones(3))
    for row, want in zip(got.tolist(), p.tolist()):       # independent: sort, keep k, spread the rest
        top = sorted(range(6), key=lambda c: -want[c])[:k]
        rest = (1 - sum(want[c] for c in top)) / (6 - k)
        for c in range(6):
            assert row[c] == pytest.approx(want[c] if c in top else rest, abs=1e-6)


def test_topk_loss_against_an_independent_computation():
    from lstsd.losses import distillation_kl
    p = probs(4, 5, seed=9)
    bank = TopKBank(4, 5, k=2, dtype=torch.float32)
    bank.write(torch.arange(4), p)
    logits = torch.randn(4, 5, generator=torch.Generator().manual_seed(1))
    target, _ = bank.read(torch.arange(4))
    for direction in ("teacher_student", "student_teacher"):
        got = distillation_kl(logits, target, 2.0, direction=direction).item()
        want = 0.0
        for row_p, row_logits in zip(p.tolist(), logits.tolist()):
            top = sorted(range(5), key=lambda c: -row_p[c])[:2]
            rest = (1 - sum(row_p[c] for c in top)) / 3
            z = [row_p[c] if c in top else rest for c in range(5)]
            s = torch.log_softmax(torch.tensor(row_logits, dtype=torch.float64) / 2, 0).tolist()
            q = [math.exp(v) for v in s]
            want += (sum(zc * (math.log(zc) - sc) for zc, sc in zip(z, s)) if direction == "teacher_student"
                     else sum(qc * (sc - math.log(zc)) for qc, sc, zc in zip(q, s, z)))
        assert got == pytest.approx(want / 4, rel=1e-5)


def test_topk_class_ids_are_int16_up_to_32767_classes_then_int32():
    assert TopKBank(2, 32767, k=3).classes.dtype == torch.int16
    assert TopKBank(2, 32768, k=3).classes.dtype == torch.int32
    assert TopKBank(2, 1000, k=10).nbytes_per_sample() == 10 * 2 + 10 * 2 + 1
    assert SoftTargetBank(2, 1000).nbytes_per_sample() == 1000 * 2 + 1


def test_unrecorded_topk_rows_read_as_zeros():
    bank = TopKBank(3, 4, k=2)
    target, recorded = bank.read(torch.tensor([1]))
    assert not recorded.any() and target.abs().sum() == 0


@pytest.mark.parametrize("kwargs,word", [
    (dict(bank_format="sparse"), "bank_format"), (dict(bank_format="topk"), "needs bank_topk"),
    (dict(bank_topk=5), "only used with bank_format='topk'"), (dict(bank_format="topk", bank_topk=0), "bank_topk"),
    (dict(bank_format="topk", bank_topk=11), r"\[1, num_classes=10\]"), (dict(bank_device="cuda"), "bank_device"),
])
def test_bad_bank_settings_are_refused(kwargs, word):
    with pytest.raises(ValueError, match=word):
        make_bank(4, 10, **kwargs)
    with pytest.raises(ValueError, match=word):
        LSTSD(4, 10, **kwargs)


def test_topk_checkpoint_with_another_k_is_refused():
    saved = TopKBank(4, 10, k=3).state_dict()
    with pytest.raises(ValueError, match="top-k"):
        TopKBank(4, 10, k=5).load_state_dict(saved)


# ----------------------------------------------------------------------------- host-resident banks
@pytest.mark.parametrize("fmt", [dict(bank_format="dense"), dict(bank_format="topk", bank_topk=2)])
def test_cpu_resident_bank_stays_on_the_host_and_serves_rows_on_the_model_s_device(fmt):
    # The "meta" device stands in for an accelerator (meta tensors have no data, so the rows are
    # written from the CPU first): moving the method there leaves a resident bank in host memory,
    # and reads come back on the device of the indices, i.e. of the logits.
    method = LSTSD(6, 4, generation_epochs=1, bank_device="cpu", validate=False, **fmt)
    method.start_epoch(0)
    method.loss(torch.randn(6, 4), torch.zeros(6, dtype=torch.long), torch.arange(6))
    method.end_epoch()
    assert method.to("meta") is method and method.short_term_bank.device.type == "cpu"
    method._follow_device(torch.device("meta"))
    assert method.short_term_bank.device.type == "cpu" and method.long_term_bank.device.type == "cpu"
    targets, recorded = method.short_term_bank.read(torch.arange(2), device="meta")
    assert targets.device.type == "meta" and recorded.device.type == "meta"
    assert LSTSD(6, 4).to("meta").short_term_bank.device.type == "meta"   # a normal bank does move


def test_cpu_resident_bank_reads_what_was_written_on_the_cpu():
    bank = make_bank(5, 3, bank_device="cpu", dtype="float32")
    p = probs(2, 3)
    bank.write(torch.tensor([4, 1]), p)
    assert torch.equal(bank.read(torch.tensor([4, 1]))[0], p)
    with pytest.raises(ValueError, match="host memory"):
        SoftTargetBank(5, 3, device="meta", cpu_resident=True)
