"""Teacher diagnostics: is each teacher *good* and *different* from the student? (the paper's thesis)

The paper argues (Introduction) that a teacher helps when it is both good (a recent snapshot) and
different from the student (an old one), and that LSTSD's two per-sample teachers give both. A
:class:`TeacherMonitor` measures it from what every training step already computes (the teacher's
targets and the student's logits: no extra forward pass), per teacher and per epoch:

* ``quality``: accuracy (%) of the teacher's argmax against the labels, over the samples it covers;
* ``kl``: mean KL(teacher ‖ student softened at T) over those samples;
* ``disagreement``: % of those samples whose teacher argmax differs from the student's;
* ``coverage``: % of the epoch's training samples that had a target from this teacher;
* ``age``: how old the teacher is, in epochs (set by the method: e.g. 1 for LSTSD's short-term
  teacher, up to E for its long-term one);
* ``stored_mass`` (sparse per-token targets only): % of the teacher's probability held by its stored
  tokens, the rest being spread uniformly over the vocabulary (top-k; 100 for the sampled format) —
  how much of the target is the teacher and how much a pull toward the uniform distribution.

Sums stay on the device during the epoch; :meth:`TeacherMonitor.summary` reads them once.

Example:
    >>> monitor = TeacherMonitor()
    >>> teacher = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]])
    >>> student_logits = torch.tensor([[2.0, 0.0], [2.0, 0.0], [0.0, 0.0]])
    >>> monitor.record("short", teacher, student_logits, torch.tensor([0, 0, 1]), temperature=1.0,
    ...                mask=torch.tensor([True, True, False]), age=1.0)
    >>> s = monitor.summary()
    >>> s["short_quality"], s["short_disagreement"], s["short_coverage"], s["short_age"]
    (50.0, 50.0, 66.66666666666667, 1.0)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F

from .sparse import SparseTargets, sparse_kl_rows

__all__ = ["TeacherMonitor"]


class TeacherMonitor:
    """Per-teacher sums over an epoch's training steps, kept on the device; see the module docstring."""

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}   # per teacher, on the device: covered, correct, KL, disagreements
        self.seen: dict[str, int] = {}            # per teacher: training samples seen this epoch
        self.ages: dict[str, float] = {}
        self.sparse: set[str] = set()             # teachers given as sparse targets: stored_mass reported

    @torch.no_grad()
    def record(self, name: str, teacher_probs: torch.Tensor | SparseTargets | None, student_logits: torch.Tensor,
               targets: torch.Tensor, *, temperature: float, mask: torch.Tensor | None = None,
               age: float | None = None) -> None:
        """Add one batch: ``teacher_probs`` (softened at T; ``None``: no target for any sample) against
        the student's ``student_logits``; ``mask`` marks the samples that have a target."""
        self.record_many({name: (teacher_probs, mask, age)}, student_logits, targets, temperature=temperature)

    @torch.no_grad()
    def record_many(self, teachers: Mapping[str, tuple[torch.Tensor | SparseTargets | None, torch.Tensor | None,
                                                       float | None]],
                    student_logits: torch.Tensor, targets: torch.Tensor, *, temperature: float) -> None:
        """:meth:`record` for several teachers of the same batch (``{name: (probs, mask, age)}``),
        softening the student once: a few element-wise passes over the batch's logits per teacher."""
        batch = student_logits.shape[0]
        student: tuple[torch.Tensor, torch.Tensor] | None = None     # log-probabilities at T, argmax
        argmax: torch.Tensor | None = None                            # the student's class (sparse teachers)
        for name, (teacher_probs, mask, age) in teachers.items():
            if age is not None:
                self.ages[name] = float(age)
            self.seen[name] = self.seen.get(name, 0) + batch          # a host count: no device work
            if teacher_probs is None or batch == 0:
                continue
            if isinstance(teacher_probs, SparseTargets):   # per-token targets: no dense n × V pass
                if argmax is None:
                    argmax = student_logits.detach().argmax(dim=1)      # once per batch
                student_class = argmax
                teacher_class = teacher_probs.top1()
                kl = sparse_kl_rows(student_logits.detach(), teacher_probs, temperature)
                stored = teacher_probs.probs.sum(dim=1)
                self.sparse.add(name)
            else:
                if student is None:
                    log_p = F.log_softmax(student_logits.detach().float() / temperature, dim=1)
                    student = (log_p, log_p.argmax(dim=1))
                log_p, student_class = student
                z = teacher_probs.float()
                teacher_class = z.argmax(dim=1)
                kl = (torch.xlogy(z, z) - z * log_p).sum(dim=1)
                stored = torch.ones_like(kl)
            rows = torch.stack([torch.ones_like(kl), (teacher_class == targets).float(), kl,
                                (teacher_class != student_class).float(), stored.float()])
            if mask is not None:
                rows = rows * mask.to(rows.dtype)
            sums = rows.double().sum(dim=1)       # covered, correct, KL, disagreements, stored mass
            self.sums[name] = sums if name not in self.sums else self.sums[name] + sums

    def reset(self) -> None:
        """Forget the sums (call at the start of every epoch)."""
        self.sums.clear()
        self.seen.clear()

    def summary(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict[str, float]:
        """``{"<teacher>_<diagnostic>": value}`` for the epoch so far (one host synchronisation).

        ``reduce`` sums the raw sums over processes under torch.distributed (e.g. an all-reduce).
        A teacher that covered no sample reports only its coverage (0) and age.
        """
        if not self.seen:
            return {}
        names = sorted(self.seen)
        device = next(iter(self.sums.values())).device if self.sums else torch.device("cpu")
        stacked = torch.stack([torch.cat([torch.tensor([float(self.seen[n])], dtype=torch.float64, device=device),
                                          self.sums.get(n, torch.zeros(5, dtype=torch.float64, device=device))])
                               for n in names])
        if reduce is not None:
            stacked = reduce(stacked)
        out: dict[str, float] = {}
        for name, (seen, covered, correct, kl, disagree, stored) in zip(names, stacked.tolist()):
            out[f"{name}_coverage"] = 100.0 * covered / seen if seen else 0.0
            if covered:
                out[f"{name}_quality"] = 100.0 * correct / covered
                out[f"{name}_kl"] = kl / covered
                out[f"{name}_disagreement"] = 100.0 * disagree / covered
                if name in self.sparse:
                    out[f"{name}_stored_mass"] = 100.0 * stored / covered
            if name in self.ages:
                out[f"{name}_age"] = self.ages[name]
        return out
