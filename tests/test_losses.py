"""distillation_kl against an independent computation; gradients reach only the student."""

import math

import pytest
import torch

from lstsd.losses import distillation_kl, soft_cross_entropy


def reference_kl(student_logits, teacher_probs, temperature, mask, direction, t2_scale):
    """Plain-Python double loop: no torch reductions shared with the implementation."""
    rows, classes = student_logits.shape
    total = 0.0
    for i in range(rows):
        if mask is not None and not bool(mask[i]):
            continue
        scaled = [float(v) / temperature for v in student_logits[i]]
        m = max(scaled)
        norm = math.log(sum(math.exp(v - m) for v in scaled)) + m
        log_p = [v - norm for v in scaled]
        z = [float(v) for v in teacher_probs[i]]
        if direction == "teacher_student":
            total += sum(zc * (math.log(zc) - lp) for zc, lp in zip(z, log_p) if zc > 0)
        else:
            total += sum(math.exp(lp) * (lp - math.log(zc)) for zc, lp in zip(z, log_p))
    loss = total / rows
    return loss * temperature ** 2 if t2_scale else loss


@pytest.mark.parametrize("direction", ["teacher_student", "student_teacher"])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 4.0])
@pytest.mark.parametrize("t2_scale", [False, True])
@pytest.mark.parametrize("use_mask", [False, True])
def test_matches_independent_computation(direction, temperature, t2_scale, use_mask):
    g = torch.Generator().manual_seed(int(temperature * 10) + use_mask)
    logits = torch.randn(6, 5, generator=g, dtype=torch.float64) * 3
    teacher = torch.softmax(torch.randn(6, 5, generator=g, dtype=torch.float64), dim=1)
    mask = torch.tensor([True, False, True, True, False, True]) if use_mask else None
    got = distillation_kl(logits, teacher, temperature, mask=mask, direction=direction, t2_scale=t2_scale)
    want = reference_kl(logits, teacher, temperature, mask, direction, t2_scale)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want, rel=1e-5, abs=1e-6)


def test_directions_differ_and_are_zero_at_equality():
    logits = torch.tensor([[1.0, 2.0, 0.5]])
    same = torch.softmax(logits / 2.0, dim=1)
    for direction in ("teacher_student", "student_teacher"):
        assert distillation_kl(logits, same, 2.0, direction=direction).abs().item() < 1e-6
    other = torch.tensor([[0.7, 0.2, 0.1]])
    a = distillation_kl(logits, other, 2.0, direction="teacher_student")
    b = distillation_kl(logits, other, 2.0, direction="student_teacher")
    assert a.item() > 0 and b.item() > 0 and abs(a.item() - b.item()) > 1e-3


def test_masked_rows_count_in_batch_size():
    logits = torch.randn(4, 3)
    teacher = torch.softmax(torch.randn(4, 3), dim=1)
    full_one = distillation_kl(logits[:1], teacher[:1], 2.0)
    masked = distillation_kl(logits, teacher, 2.0, mask=torch.tensor([True, False, False, False]))
    assert masked.item() == pytest.approx(full_one.item() / 4, rel=1e-6)


def test_zero_teacher_rows_are_finite_in_both_directions():
    logits = torch.randn(2, 3)
    teacher = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])  # underflow / never written
    for direction in ("teacher_student", "student_teacher"):
        loss = distillation_kl(logits, teacher, 2.0, mask=torch.tensor([True, False]), direction=direction)
        assert torch.isfinite(loss)


@pytest.mark.parametrize("direction", ["teacher_student", "student_teacher"])
def test_gradients_reach_only_the_student(direction):
    logits = torch.randn(3, 4, requires_grad=True)
    teacher_logits = torch.randn(3, 4, requires_grad=True)
    teacher = torch.softmax(teacher_logits, dim=1)
    distillation_kl(logits, teacher, 2.0, direction=direction).backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert teacher_logits.grad is None


def test_gradient_matches_closed_form():
    # d/dl KL(z || softmax(l/T)) = (softmax(l/T) - z) / (T * B)
    logits = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    z = torch.softmax(torch.randn(2, 5, dtype=torch.float64), dim=1)
    distillation_kl(logits, z, 3.0).backward()
    want = (torch.softmax(logits.detach() / 3.0, dim=1) - z) / (3.0 * 2)
    torch.testing.assert_close(logits.grad, want.float().double(), atol=1e-6, rtol=1e-5)


def test_bf16_logits_are_computed_in_float32():
    logits = torch.randn(4, 6)
    z = torch.softmax(torch.randn(4, 6), dim=1)
    a = distillation_kl(logits.bfloat16(), z, 2.0)
    b = distillation_kl(logits.bfloat16().float(), z, 2.0)
    assert a.dtype == torch.float32 and a.item() == pytest.approx(b.item(), rel=1e-6)


@pytest.mark.parametrize("call,word", [
    (lambda: distillation_kl(torch.randn(2, 3), torch.rand(2, 4), 2.0), "shape"),
    (lambda: distillation_kl(torch.randn(2, 3), torch.rand(2, 3), 0.0), "temperature"),
    (lambda: distillation_kl(torch.randn(2, 3), torch.rand(2, 3), float("nan")), "temperature"),
    (lambda: distillation_kl(torch.randn(2, 3), torch.rand(2, 3), 1.0, direction="forward"), "direction"),
    (lambda: distillation_kl(torch.randn(2, 3), torch.rand(2, 3), 1.0, mask=torch.ones(2)), "mask"),
    (lambda: distillation_kl(torch.randn(2, 3), torch.rand(2, 3), 1.0, mask=torch.ones(3, dtype=torch.bool)), "mask"),
    (lambda: distillation_kl(torch.randn(6), torch.rand(6), 1.0), "shape"),
])
def test_validation_errors(call, word):
    with pytest.raises(ValueError, match=word):
        call()


def test_soft_cross_entropy_equals_hard_cross_entropy_on_one_hot():
    logits = torch.randn(5, 4)
    y = torch.tensor([0, 3, 1, 1, 2])
    one_hot = torch.nn.functional.one_hot(y, 4).float()
    want = torch.nn.functional.cross_entropy(logits, y)
    assert soft_cross_entropy(logits, one_hot).item() == pytest.approx(want.item(), rel=1e-6)
