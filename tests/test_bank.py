"""SoftTargetBank: storage, masks, state round trips and every validation error."""

import pytest
import torch

from lstsd import SoftTargetBank


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


def test_state_dict_round_trip_and_reset():
    bank = SoftTargetBank(5, 3, dtype=torch.bfloat16)
    bank.write(torch.tensor([4, 1]), probs(2, 3))
    other = SoftTargetBank(5, 3, dtype=torch.bfloat16)
    other.load_state_dict(bank.state_dict())
    assert torch.equal(other.targets, bank.targets) and torch.equal(other.recorded, bank.recorded)
    bank.reset()
    assert not bank.recorded.any() and other.recorded.sum() == 2


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
