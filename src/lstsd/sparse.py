"""Sparse soft targets over a large vocabulary, and the distillation terms against them computed
without ever building a dense ``n × V`` target (``docs/decisions.md``, "Per-token banks").

A language model predicts one of ``V`` (≈ 50,000) tokens at every position, so a per-token bank
cannot store whole distributions. :class:`SparseTargets` holds, per row, a few token ids with their
probabilities and one probability ``tail`` that every *other* token has:

* **top-k** rows (the ``topk`` format): the ``k`` largest probabilities of the teacher, the leftover
  mass ``1 − Σ top-k`` spread uniformly over the other ``V − k`` tokens (as :class:`lstsd.bank.TopKBank`
  does per sample). Not renormalised: that would bias the target.
* **sampled** rows (the ``sampled`` format): the tokens of ``s`` draws from the teacher, each with
  its share of the draws (``count / s``), tail 0. Its expectation is the teacher, so the gradient of
  the cross-entropy against it is the gradient against the teacher, in expectation (Anshumann et al.,
  "Sparse Logit Sampling: Accelerating Knowledge Distillation in LLMs", ACL 2025, who show that top-k
  caching is a biased estimate of the teacher and that sampled sparse targets are not).

With the student's logits ``z`` and ``log q = z/T − logsumexp(z/T)``, KL(p ‖ q) needs only a gather
of ``log q`` at the stored ids and two reductions over the vocabulary (the log-sum-exp and the sum of
``z``) per row::

    KL(p ‖ q) = Σ_k p_j log p_j + (V − k)·u log u − Σ_k p_j log q_j − u·(Σ_all log q − Σ_k log q_j)
    Σ_all log q = Σ_all z/T − V·logsumexp(z/T)

Example:
    >>> logits = torch.tensor([[2.0, 0.0, -1.0, 0.5]])
    >>> probs = torch.softmax(torch.tensor([[1.0, 1.0, 0.0, 0.0]]), dim=1)
    >>> target = SparseTargets.top_k(probs, k=2)
    >>> dense = distillation_kl(logits, target.to_dense())
    >>> bool(torch.allclose(sparse_kl(logits, target), dense))
    True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from .losses import KLDirection, check_kl_direction, check_temperature, distillation_kl

__all__ = ["SparseTargets", "kl_against", "shared_student_stats", "sparse_cross_entropy", "sparse_kl", "sparse_kl_rows",
           "mix_sparse", "sparse_ce_and_kls", "sparse_kls", "student_stats"]

# As in lstsd.losses: a teacher probability that underflowed in an fp16 bank stays finite in the
# literal direction.
_TEACHER_FLOOR = 1e-8


@dataclass
class SparseTargets:
    """Per row: ``ids`` (``n × k`` int64 token ids), ``probs`` (``n × k`` float32, their
    probabilities), ``tail`` (``n`` float32, the probability of each token not among ``ids``) over
    a vocabulary of ``num_classes`` tokens. Entries with probability 0 are padding (their id is
    ignored); stored ids of a row are distinct where ``tail > 0``."""

    ids: torch.Tensor
    probs: torch.Tensor
    tail: torch.Tensor
    num_classes: int

    @staticmethod
    def top_k(probs: torch.Tensor, k: int) -> SparseTargets:
        """The top-``k`` of dense ``n × V`` probabilities with the rest spread uniformly (for tests and
        for the dense-to-sparse path)."""
        values, ids = probs.float().topk(k, dim=1)
        rest = probs.shape[1] - k
        tail = (1.0 - values.sum(dim=1)).clamp_min(0.0) / rest if rest else values.new_zeros(values.shape[0])
        return SparseTargets(ids, values, tail, probs.shape[1])

    @property
    def rows(self) -> int:
        return self.ids.shape[0]

    def to(self, device: torch.device | str) -> SparseTargets:
        return SparseTargets(self.ids.to(device), self.probs.to(device), self.tail.to(device), self.num_classes)

    def top1(self) -> torch.Tensor:
        """The most probable token of each row (``n`` int64)."""
        return self.ids.gather(1, self.probs.argmax(dim=1, keepdim=True)).squeeze(1)

    def to_dense(self) -> torch.Tensor:
        """The ``n × V`` float32 distribution (for tests and small vocabularies only)."""
        out = self.tail[:, None].expand(self.rows, self.num_classes).clone()
        # Stored ids hold their own probability, not the tail (padding entries occur only where the tail is 0).
        out.scatter_(1, self.ids, 0.0)
        return out.scatter_add_(1, self.ids, self.probs.float())


_shared: dict[tuple[Any, ...], tuple[torch.Tensor, torch.Tensor]] | None = None


@contextmanager
def shared_student_stats() -> Iterator[None]:
    """Within this context the log-sum-exp and the sum of a student's softened logits are computed
    once per (logits, T) and reused by every term that needs them (both teachers' KL, the teacher
    diagnostics, the targets recorded): a pass over the ``n × V`` logits each, and one buffer of
    that size kept for the backward pass instead of one per term."""
    global _shared
    outer, _shared = _shared, {}
    try:
        yield
    finally:
        _shared = outer


def student_stats(logits: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logsumexp(z / T), Σ z / T)`` per row, from the cache of :func:`shared_student_stats` if open."""
    tracked = logits.requires_grad and torch.is_grad_enabled()
    key = (logits.data_ptr(), tuple(logits.shape), logits.stride(), logits._version, float(temperature))
    if _shared is not None:
        for grad in ((True,) if tracked else (False, True)):   # without grad, a tracked entry serves, detached
            if key + (grad,) in _shared:
                lse, total = _shared[key + (grad,)]
                return (lse, total) if tracked else (lse.detach(), total.detach())
    scaled = logits.float() / temperature
    stats = torch.logsumexp(scaled, dim=1), scaled.sum(dim=1)
    if _shared is not None:
        _shared[key + (tracked,)] = stats
    return stats


def _student_parts(logits: torch.Tensor, ids: torch.Tensor, temperature: float) -> tuple[torch.Tensor, ...]:
    """``(log q at ids, Σ_all log q, logsumexp)`` of the student softened at T, per row: a gather
    and the two reductions of :func:`student_stats`, never an ``n × V`` output."""
    lse, total = student_stats(logits, temperature)
    log_q_ids = logits.gather(1, ids).float() / temperature - lse[:, None]
    return log_q_ids, total - logits.shape[1] * lse, lse


def sparse_kl_rows(logits: torch.Tensor, target: SparseTargets, temperature: float = 1.0,
                   direction: KLDirection = "teacher_student") -> torch.Tensor:
    """KL divergence of each row (``n`` float32) between ``target`` (probabilities at T) and the
    student ``softmax(logits / T)``; see the module docstring. The target is detached."""
    t = check_temperature(temperature)
    check_kl_direction(direction)
    vocab = logits.shape[1]
    if target.num_classes != vocab:
        raise ValueError(f"the sparse targets are over {target.num_classes} tokens but the logits have {vocab} columns")
    ids, p, u = target.ids.long(), target.probs.detach().float(), target.tail.detach().float()
    stored = (p > 0).sum(dim=1).to(p.dtype)                         # distinct stored ids (padding has p = 0)
    log_q_ids, log_q_all, lse = _student_parts(logits, ids, t)
    in_ids = torch.where(p > 0, log_q_ids, torch.zeros_like(log_q_ids)).sum(dim=1)
    if direction == "teacher_student":
        return (torch.xlogy(p, p).sum(dim=1) + (vocab - stored) * torch.xlogy(u, u)
                - (p * log_q_ids).sum(dim=1) - u * (log_q_all - in_ids))
    if bool((u <= 0).any()):
        raise ValueError("KL(student ‖ teacher) needs the teacher's probability of every token; sampled targets "
                         "have none outside the samples: use kl_direction='teacher_student' with the sampled format")
    scaled = logits.float() / t
    q = torch.softmax(scaled, dim=1)
    entropy_part = (q * scaled).sum(dim=1) - lse                    # Σ q log q
    q_ids = torch.where(p > 0, log_q_ids.exp(), torch.zeros_like(log_q_ids))
    return (entropy_part - (q_ids * p.clamp_min(_TEACHER_FLOOR).log()).sum(dim=1)
            - (1.0 - q_ids.sum(dim=1)) * u.clamp_min(_TEACHER_FLOOR).log())


class _SparseDistillation(torch.autograd.Function):
    """Per row: the cross-entropy against the labels (when given) and KL(p_t ‖ softmax(z / T)) for
    several sparse teachers (``m × n``), with the gradient in closed form,
    ∂CE/∂z = softmax(z) − onehot(y) and ∂KL/∂z = (softmax(z / T) − p̃) / T, p̃ a teacher's full
    distribution (its stored probabilities at their ids, ``tail`` elsewhere). The backward pass
    builds one ``n × V`` buffer (two when T ≠ 1 and the cross-entropy is included) whatever the
    number of teachers, where autograd would build one per gather and keep the log-softmax."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, labels: torch.Tensor | None, temperature: float,
                *teachers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = logits.detach()
        lse, total = student_stats(z, temperature)
        vocab = logits.shape[1]
        rows = []
        for ids, p, u in zip(teachers[0::3], teachers[1::3], teachers[2::3]):
            log_q_ids = z.gather(1, ids).float() / temperature - lse[:, None]
            stored = (p > 0).sum(dim=1).to(p.dtype)
            in_ids = torch.where(p > 0, log_q_ids, torch.zeros_like(log_q_ids)).sum(dim=1)
            rows.append(torch.xlogy(p, p).sum(dim=1) + (vocab - stored) * torch.xlogy(u, u)
                        - (p * log_q_ids).sum(dim=1) - u * (total - vocab * lse - in_ids))
        lse_1 = lse
        if labels is None:
            ce = z.new_zeros(0, dtype=torch.float32)
        else:
            lse_1 = lse if temperature == 1.0 else student_stats(z, 1.0)[0]
            ce = lse_1 - z.gather(1, labels[:, None]).squeeze(1).float()
        ctx.save_for_backward(logits, lse, lse_1, *([] if labels is None else [labels]), *teachers)
        ctx.temperature, ctx.with_labels, ctx.teachers = temperature, labels is not None, len(teachers)
        kl = torch.stack(rows) if rows else z.new_zeros(0, z.shape[0], dtype=torch.float32)
        return ce, kl

    @staticmethod
    def backward(ctx: Any, grad_ce: torch.Tensor, grad_kl: torch.Tensor) -> tuple[Any, ...]:
        saved = ctx.saved_tensors
        logits, lse, lse_1 = saved[:3]
        labels = saved[3] if ctx.with_labels else None
        teachers = saved[3 + ctx.with_labels:]
        t = ctx.temperature
        grad_kl = grad_kl.float()
        coef = grad_kl.sum(dim=0) / t                          # Σ_t g_t / T, per row
        grad = logits.float() / t
        grad.sub_(lse[:, None]).exp_()                          # softmax(z / T), in place
        if labels is not None and t == 1.0:
            grad.mul_((coef + grad_ce.float())[:, None])
        else:
            grad.mul_(coef[:, None])
            if labels is not None:
                grad.add_((logits.float() - lse_1[:, None]).exp_().mul_(grad_ce.float()[:, None]))
        if labels is not None:
            grad.scatter_add_(1, labels[:, None], -grad_ce.float()[:, None])       # − onehot(y)
        for g, ids, p, u in zip(grad_kl, teachers[0::3], teachers[1::3], teachers[2::3]):
            g = g / t
            grad.sub_((g * u)[:, None])
            grad.scatter_add_(1, ids, torch.where(p > 0, -(g[:, None] * (p - u[:, None])), torch.zeros_like(p)))
        return (grad.to(logits.dtype), None, None, *([None] * ctx.teachers))


def _flat_teachers(logits: torch.Tensor, targets: list[SparseTargets]) -> list[torch.Tensor]:
    flat: list[torch.Tensor] = []
    for target in targets:
        if target.num_classes != logits.shape[1]:
            raise ValueError(f"the sparse targets are over {target.num_classes} tokens but the logits have "
                             f"{logits.shape[1]} columns")
        flat += [target.ids.long(), target.probs.detach().float(), target.tail.detach().float()]
    return flat


def _reduce(per_row: torch.Tensor, mask: torch.Tensor | None, t: float, t2_scale: bool) -> torch.Tensor:
    if mask is not None:
        per_row = torch.where(mask, per_row, torch.zeros_like(per_row))
    loss = per_row.sum() / per_row.shape[0]
    return loss * (t * t) if t2_scale else loss


def sparse_ce_and_kls(logits: torch.Tensor, labels: torch.Tensor, targets: list[SparseTargets],
                      temperature: float = 1.0, masks: list[torch.Tensor | None] | None = None,
                      t2_scale: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The mean cross-entropy against ``labels`` and :func:`sparse_kls` in one pass: one log-sum-exp
    of the student per temperature and one gradient buffer (per-token LSTSD's loss, Eq. 1).

    Example:
        >>> logits, labels = torch.randn(3, 10), torch.tensor([1, 2, 3])
        >>> teacher = SparseTargets.top_k(torch.softmax(torch.randn(3, 10), dim=1), 2)
        >>> ce, (kl,) = sparse_ce_and_kls(logits, labels, [teacher], 2.0)
        >>> bool(torch.allclose(ce, torch.nn.functional.cross_entropy(logits, labels)))
        True
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0, [logits.sum() * 0.0 for _ in targets]
    t = check_temperature(temperature)
    ce_rows, kl_rows = _SparseDistillation.apply(logits, labels.long(), t, *_flat_teachers(logits, targets))
    masks = masks or [None] * len(targets)
    return ce_rows.mean(), [_reduce(per_row, mask, t, t2_scale) for per_row, mask in zip(kl_rows, masks)]


def sparse_kls(logits: torch.Tensor, targets: list[SparseTargets], temperature: float = 1.0,
               masks: list[torch.Tensor | None] | None = None, t2_scale: bool = False) -> list[torch.Tensor]:
    """:func:`sparse_kl` (KL(teacher ‖ student)) against several teachers of the same rows, computed
    together: one log-sum-exp of the student and one ``n × V`` buffer in the backward pass.

    Example:
        >>> logits = torch.randn(3, 10)
        >>> a, b = (SparseTargets.top_k(torch.softmax(torch.randn(3, 10), dim=1), 2) for _ in range(2))
        >>> together = sparse_kls(logits, [a, b], 2.0)
        >>> bool(torch.allclose(together[1], sparse_kl(logits, b, 2.0)))
        True
    """
    if logits.shape[0] == 0:
        return [logits.sum() * 0.0 for _ in targets]
    t = check_temperature(temperature)
    _, kl_rows = _SparseDistillation.apply(logits, None, t, *_flat_teachers(logits, targets))
    masks = masks or [None] * len(targets)
    return [_reduce(per_row, mask, t, t2_scale) for per_row, mask in zip(kl_rows, masks)]


def sparse_kl(logits: torch.Tensor, target: SparseTargets, temperature: float = 1.0,
              mask: torch.Tensor | None = None, direction: KLDirection = "teacher_student",
              t2_scale: bool = False) -> torch.Tensor:
    """:func:`lstsd.losses.distillation_kl` against sparse targets: the rows' KL summed over the rows
    where ``mask`` is True, divided by the number of rows (masked rows count, adding 0).

    Example:
        >>> target = SparseTargets(torch.tensor([[0, 1]]), torch.tensor([[0.5, 0.5]]), torch.tensor([0.0]), 3)
        >>> round(sparse_kl(torch.tensor([[0.0, 0.0, -30.0]]), target).item(), 6)
        0.0
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    if direction == "teacher_student":          # the closed-form gradient (sparse_kls)
        return sparse_kls(logits, [target], temperature, [mask], t2_scale)[0]
    per_row = sparse_kl_rows(logits, target, temperature, direction)
    if mask is not None:
        per_row = torch.where(mask, per_row, torch.zeros_like(per_row))
    loss = per_row.sum() / logits.shape[0]
    t = float(temperature)
    return loss * (t * t) if t2_scale else loss


def sparse_cross_entropy(logits: torch.Tensor, target: SparseTargets, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``−1/n Σ_rows Σ_V p log q`` at T = 1 against sparse targets (rows where ``mask`` is False add 0).

    Example:
        >>> target = SparseTargets(torch.tensor([[1]]), torch.tensor([[1.0]]), torch.tensor([0.0]), 2)
        >>> round(sparse_cross_entropy(torch.tensor([[0.0, 0.0]]), target).item(), 4)    # ln 2
        0.6931
    """
    if logits.shape[0] == 0:
        return logits.sum() * 0.0
    p, u = target.probs.detach().float(), target.tail.detach().float()
    log_q_ids, log_q_all, _ = _student_parts(logits, target.ids.long(), 1.0)
    in_ids = torch.where(p > 0, log_q_ids, torch.zeros_like(log_q_ids)).sum(dim=1)
    per_row = -(p * log_q_ids).sum(dim=1) - u * (log_q_all - in_ids)
    if mask is not None:
        per_row = torch.where(mask, per_row, torch.zeros_like(per_row))
    return per_row.sum() / logits.shape[0]


def mix_sparse(old: SparseTargets, new: SparseTargets, weight: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
    """The ``k`` most probable tokens of ``weight·old + (1 − weight)·new`` per row: ``(probs, ids)``,
    float32 and int64 (the rest of the mixture's mass is left to the uniform tail of the top-k format).

    The candidates are the ids stored in either; a token stored in one only takes the other's tail
    probability. Used for Temporal Ensembling's moving average of sparse per-token predictions.

    Example:
        >>> a = SparseTargets(torch.tensor([[0, 1]]), torch.tensor([[0.6, 0.4]]), torch.tensor([0.0]), 4)
        >>> b = SparseTargets(torch.tensor([[2, 1]]), torch.tensor([[0.5, 0.5]]), torch.tensor([0.0]), 4)
        >>> probs, ids = mix_sparse(a, b, torch.tensor([0.5]), 2)
        >>> ids.tolist(), [round(p, 2) for p in probs[0].tolist()]
        ([[1, 0]], [0.45, 0.3])
    """
    candidates = torch.cat([old.ids.long(), new.ids.long()], dim=1)

    def probability(t: SparseTargets) -> torch.Tensor:
        stored = (candidates[:, :, None] == t.ids.long()[:, None, :]) & (t.probs[:, None, :] > 0)
        value = (stored * t.probs.float()[:, None, :]).sum(dim=2)
        return torch.where(stored.any(dim=2), value, t.tail.float()[:, None].expand_as(value))

    mixed = weight.float()[:, None] * probability(old) + (1.0 - weight.float()[:, None]) * probability(new)
    repeated = (candidates[:, :, None] == candidates[:, None, :]).tril(diagonal=-1).any(dim=2)
    probs, where = mixed.masked_fill(repeated, -1.0).topk(k, dim=1)
    return probs.clamp_min(0.0), candidates.gather(1, where)


def kl_against(logits: torch.Tensor, target: torch.Tensor | SparseTargets, temperature: float,
               mask: torch.Tensor | None = None, direction: KLDirection = "teacher_student",
               t2_scale: bool = False) -> torch.Tensor:
    """The distillation KL against dense probabilities or :class:`SparseTargets`, whichever ``target`` is."""
    if isinstance(target, SparseTargets):
        return sparse_kl(logits, target, temperature, mask, direction, t2_scale)
    return distillation_kl(logits, target, temperature, mask, direction, t2_scale)
