"""Per-token banks (lstsd.tokens) and the sparse distillation terms (lstsd.sparse): layout, formats,
faults, and the KL against sparse targets equal to the dense KL it replaces."""

from __future__ import annotations

import pytest
import torch

from lstsd.bank import TopKBank
from lstsd.losses import distillation_kl
from lstsd.sparse import SparseTargets, sparse_cross_entropy, sparse_kl, sparse_kl_rows
from lstsd.tokens import KEY_BITS, TokenBank, supervised_positions, token_keys

V = 50


def labels_batch() -> torch.Tensor:
    # Two prompt tokens, then answers of different lengths, then padding (-100).
    return torch.tensor([[-100, -100, 7, 8, 9, -100],
                         [-100, -100, 3, -100, -100, -100],
                         [-100, -100, 1, 2, 3, 4]])


def test_supervised_positions_follow_the_causal_shift():
    mask, targets = supervised_positions(labels_batch())
    # logits[b, t] predicts labels[b, t + 1]: the position before each supervised label.
    assert mask.tolist() == [[False, True, True, True, False, False],
                             [False, True, False, False, False, False],
                             [False, True, True, True, True, False]]
    assert targets.tolist() == [7, 8, 9, 3, 1, 2, 3, 4]


def test_token_keys_number_each_example_s_tokens_from_zero():
    mask, _ = supervised_positions(labels_batch())
    keys = token_keys(torch.tensor([5, 0, 2]), mask)
    assert (keys >> KEY_BITS).tolist() == [5, 5, 5, 0, 2, 2, 2, 2]
    assert (keys & ((1 << KEY_BITS) - 1)).tolist() == [0, 1, 2, 0, 0, 1, 2, 3]


def write_batch(bank: TokenBank, examples: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    mask, _ = supervised_positions(labels_batch()[:len(examples)])
    keys = token_keys(torch.tensor(examples), mask)
    probs = torch.softmax(torch.randn(keys.numel(), V, generator=torch.Generator().manual_seed(seed)), dim=1)
    bank.store(keys, *bank.encode(probs))
    return keys, probs


def test_the_layout_is_ragged_in_ascending_example_order_and_holds_only_supervised_tokens():
    bank = TokenBank(6, V, bank_format="topk", k=4)
    write_batch(bank, [5, 0, 2])
    assert bank.counts.tolist() == [1, -1, 4, -1, -1, 3]
    assert bank.offsets[[0, 2, 5]].tolist() == [0, 1, 5]
    assert bank.filled == 8                                         # the 8 supervised tokens, no padding


def test_top_k_rows_read_back_as_the_dense_top_k_bank_reads_them():
    bank = TokenBank(6, V, bank_format="topk", k=4, dtype="float32")
    keys, probs = write_batch(bank, [5, 0, 2])
    targets, recorded = bank.read(keys)
    assert recorded.all()
    dense = TopKBank(keys.numel(), V, k=4, dtype="float32", validate=False)
    dense.write(torch.arange(keys.numel()), probs)
    assert torch.allclose(targets.to_dense(), dense.read(torch.arange(keys.numel()))[0], atol=1e-7)


def test_unwritten_examples_read_as_not_recorded():
    bank = TokenBank(6, V, bank_format="topk", k=4)
    write_batch(bank, [5])
    mask, _ = supervised_positions(labels_batch()[:2])
    targets, recorded = bank.read(token_keys(torch.tensor([5, 1]), mask))
    assert recorded.tolist() == [True, True, True, False]
    assert float(targets.probs[3].sum()) == 0.0 and float(targets.tail[3]) == 0.0


def test_a_changed_number_of_supervised_tokens_is_refused_in_one_line():
    bank = TokenBank(6, V, bank_format="topk", k=4)
    write_batch(bank, [5, 0, 2])
    with pytest.raises(ValueError, match=r"example 0 has 4 supervised tokens but had 1 when first seen.*truncation"):
        write_batch(bank, [1, 2, 0])     # example 0 now in row 2 (four tokens)


def test_non_finite_rows_never_reach_the_bank():
    bank = TokenBank(6, V, bank_format="topk", k=4)
    keys, _ = write_batch(bank, [5, 0, 2])
    before = bank.read(keys)[0].probs.clone()
    values, ids = bank.encode(torch.softmax(torch.randn(keys.numel(), V, generator=torch.Generator().manual_seed(7)),
                                            dim=1))
    values[1, 0] = float("nan")
    bank.store(keys, values, ids)
    after = bank.read(keys)[0].probs
    assert torch.isfinite(after).all() and torch.equal(after[1], before[1]) and not torch.equal(after[0], before[0])


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_sampled_rows_of_non_finite_logits_are_drawn_but_never_stored(bad: float):
    bank = TokenBank(6, V, bank_format="sampled", k=8)
    keys, _ = write_batch(bank, [5, 0, 2])
    before = bank.read(keys)[0]
    logits = torch.randn(keys.numel(), V, generator=torch.Generator().manual_seed(7))
    logits[1, 3] = bad
    values, ids = bank.encode_logits(logits, temperature=2.0)
    assert torch.isnan(values[1]).all() and torch.isfinite(values[[0, 2, 3, 4]]).all()
    bank.store(keys, values, ids)
    after = bank.read(keys)[0]
    assert torch.isfinite(after.probs).all()
    assert torch.equal(after.probs[1], before.probs[1]) and torch.equal(after.ids[1], before.ids[1])
    assert not torch.equal(after.ids[0], before.ids[0])


def test_a_masked_token_of_minus_infinity_leaves_a_finite_row_that_never_draws_it():
    bank = TokenBank(6, V, bank_format="sampled", k=8)
    logits = torch.zeros(3, V)
    logits[:, 5:] = float("-inf")                   # five tokens left, each 1/5
    values, ids = bank.encode_logits(logits, temperature=1.0)
    assert torch.isfinite(values).all() and bool((ids[values > 0] < 5).all())


def test_sampled_rows_from_logits_at_t_1_are_the_rows_from_their_softmax():
    logits = torch.randn(5, V, generator=torch.Generator().manual_seed(3))
    from_logits = TokenBank(6, V, bank_format="sampled", k=8).encode_logits(logits, temperature=1.0)
    from_probs = TokenBank(6, V, bank_format="sampled", k=8).encode(torch.softmax(logits, dim=1))
    assert all(torch.equal(a, b) for a, b in zip(from_logits, from_probs))


def test_the_state_dict_holds_the_rows_in_use_and_loads_into_a_fresh_bank():
    bank = TokenBank(6, V, bank_format="sampled", k=8)
    keys, _ = write_batch(bank, [5, 0, 2])
    state = bank.state_dict()
    assert state["values"].shape[0] == 8 and int(state["writes"]) == 1
    fresh = TokenBank(6, V, bank_format="sampled", k=8)
    fresh.load_state_dict(state)
    a, b = bank.read(keys)[0], fresh.read(keys)[0]
    assert torch.equal(a.ids, b.ids) and torch.equal(a.probs, b.probs)
    with pytest.raises(ValueError, match="another bank format, k or dtype"):
        TokenBank(6, V, bank_format="topk", k=4).load_state_dict(state)


def test_sampled_rows_are_an_unbiased_estimate_of_the_teacher():
    probs = torch.softmax(torch.randn(1, V, generator=torch.Generator().manual_seed(3)) * 2, dim=1)
    bank = TokenBank(1, V, bank_format="sampled", k=16)
    total = torch.zeros(V)
    draws = 400
    for _ in range(draws):
        values, ids = bank.encode(probs)
        total += SparseTargets(ids.long(), values.float(), torch.zeros(1), V).to_dense()[0]
        assert abs(float(values.float().sum()) - 1.0) < 1e-3       # shares of the draws add up to 1
    # Mean of 400 × 16 draws: each probability within 4 standard errors.
    stderr = (probs[0] * (1 - probs[0]) / (draws * 16)).sqrt()
    assert ((total / draws - probs[0]).abs() <= 4 * stderr + 1e-3).all()


def test_sampled_draws_are_reproducible_from_the_bank_s_own_state():
    probs = torch.softmax(torch.randn(4, V), dim=1)
    a, b = TokenBank(1, V, bank_format="sampled", k=8, seed=1), TokenBank(1, V, bank_format="sampled", k=8, seed=1)
    state = torch.random.get_rng_state()
    assert torch.equal(a.encode(probs)[1], b.encode(probs)[1])
    assert not torch.equal(a.encode(probs)[1], a.encode(probs)[1])   # each write draws anew
    assert torch.equal(torch.random.get_rng_state(), state)           # the global stream is untouched


@pytest.mark.parametrize("direction", ["teacher_student", "student_teacher"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_the_sparse_kl_equals_the_dense_kl_and_its_gradient(direction: str, temperature: float):
    g = torch.Generator().manual_seed(0)
    teacher = SparseTargets.top_k(torch.softmax(torch.randn(6, V, generator=g) / temperature, dim=1), k=5)
    mask = torch.tensor([True, True, False, True, True, True])
    logits = torch.randn(6, V, generator=g, requires_grad=True)
    dense = distillation_kl(logits, teacher.to_dense(), temperature, mask=mask, direction=direction)  # type: ignore[arg-type]
    (grad_dense,) = torch.autograd.grad(dense, logits)
    sparse = sparse_kl(logits, teacher, temperature, mask=mask, direction=direction)  # type: ignore[arg-type]
    (grad_sparse,) = torch.autograd.grad(sparse, logits)
    assert torch.allclose(sparse, dense, atol=1e-5)
    assert torch.allclose(grad_sparse, grad_dense, atol=1e-6)


def test_the_sparse_kl_against_sampled_targets_equals_the_dense_kl_against_their_estimate():
    bank = TokenBank(1, V, bank_format="sampled", k=12)
    values, ids = bank.encode(torch.softmax(torch.randn(5, V), dim=1))
    teacher = SparseTargets(ids.long(), values.float(), torch.zeros(5), V)
    logits = torch.randn(5, V)
    assert torch.allclose(sparse_kl_rows(logits, teacher, 2.0),
                          torch.stack([distillation_kl(logits[i:i + 1], teacher.to_dense()[i:i + 1], 2.0)
                                       for i in range(5)]), atol=1e-5)
    with pytest.raises(ValueError, match="sampled targets have none outside the samples"):
        sparse_kl(logits, teacher, 2.0, direction="student_teacher")


def test_the_sparse_cross_entropy_equals_the_dense_soft_cross_entropy():
    teacher = SparseTargets.top_k(torch.softmax(torch.randn(4, V), dim=1), k=3)
    logits = torch.randn(4, V)
    dense = -(teacher.to_dense() * torch.log_softmax(logits, dim=1)).sum() / 4
    assert torch.allclose(sparse_cross_entropy(logits, teacher), dense, atol=1e-5)


def test_bytes_per_supervised_token():
    assert TokenBank(1, 49152, bank_format="topk", k=8).nbytes_per_token() == 8 * (2 + 4) + 1
    assert TokenBank(1, 49152, bank_format="sampled", k=16).nbytes_per_token() == 16 * (2 + 4) + 1


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_the_fused_cross_entropy_and_kls_equal_autograd_through_the_dense_loss(temperature: float):
    from lstsd.sparse import sparse_ce_and_kls
    g = torch.Generator().manual_seed(4)
    teachers = [SparseTargets.top_k(torch.softmax(torch.randn(7, V, generator=g), dim=1), k=k) for k in (3, 6)]
    masks = [torch.tensor([True] * 6 + [False]), None]
    labels = torch.randint(0, V, (7,), generator=g)
    logits = torch.randn(7, V, generator=g, requires_grad=True)
    ce, kls = sparse_ce_and_kls(logits, labels, teachers, temperature, masks)
    fused = ce + 2.4 * kls[0] + 4.0 * kls[1]
    (grad_fused,) = torch.autograd.grad(fused, logits)
    dense = (torch.nn.functional.cross_entropy(logits, labels)
             + 2.4 * distillation_kl(logits, teachers[0].to_dense(), temperature, mask=masks[0])
             + 4.0 * distillation_kl(logits, teachers[1].to_dense(), temperature))
    (grad_dense,) = torch.autograd.grad(dense, logits)
    assert torch.allclose(fused, dense, atol=1e-5)
    assert torch.allclose(grad_fused, grad_dense, atol=1e-6)
