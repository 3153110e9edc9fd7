"""Long Short-Term Sample Distillation — Algorithm 1 of Jiang et al., AAAI 2020.

Training is divided into mini-generations of E epochs. Every sample has two teachers of its own,
stored as probability vectors rather than weights:

* the **short-term teacher** ``z^S_i``: the network's prediction for sample i when it was trained
  on in the previous epoch (Method, "Short-Term Teacher");
* the **long-term teacher** ``z^L_i``: the prediction recorded in the last epoch of the previous
  mini-generation, fixed for a whole mini-generation (Method, "Long-Term Teacher").

The loss of a mini-batch is Eq. (1): ``L = L^C + λ^L·L^L + λ^S·L^S`` from the second
mini-generation on, cross-entropy alone in the first. Mapping of Algorithm 1 onto this file::

    m = epoch // E   (0-based; the paper's "m > 1" is "m > 0" here)
    line 5      L^C  = cross_entropy(logits, y)
    lines 6-9   if m > 0:  L = L^C + λ^L·KL(z^L_i, p_i) + λ^S·KL(z^S_i, p_i)
    line 11     else:      L = L^C
    line 14     z^S_i ← softmax(logits_i / T)               every epoch
    lines 15-16 z^L_i ← softmax(logits_i / T)               if (epoch + 1) % E == 0

The targets of line 14/16 are taken from the training forward pass that computed the loss
(detached), i.e. the snapshot "when it is selected as training data" in the paper's text; this is
what makes the method cost "almost no extra computation" (no second forward pass).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ..bank import Bank, finite_rows
from ..diagnostics import TeacherMonitor
from ..losses import KLDirection, cross_entropy
from ..sparse import SparseTargets, kl_against, sparse_ce_and_kls
from ..tokens import TokenBank
from .base import LossParts, Method
from .settings import BankSettings, Distillation, MiniGenerations, check_int, check_weight, gaussian_rampup


def lstsd_loss(logits: torch.Tensor, targets: torch.Tensor, *,
               long_term_targets: torch.Tensor | SparseTargets | None,
               short_term_targets: torch.Tensor | SparseTargets | None,
               lambda_long: float, lambda_short: float, temperature: float,
               long_term_mask: torch.Tensor | None = None, short_term_mask: torch.Tensor | None = None,
               kl_direction: KLDirection = "teacher_student",
               t2_scale: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. (1) of the paper, the functional form: ``L^C + λ^L·L^L + λ^S·L^S``.

    A teacher given as ``None`` (or with weight 0) contributes nothing. Masks mark the samples that
    have a recorded target; the others get no distillation term.

    Returns:
        ``(total, {"ce": L^C, "long": L^L, "short": L^S})`` with the parts detached.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
        >>> teacher = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
        >>> total, parts = lstsd_loss(logits, torch.tensor([0, 1]), long_term_targets=teacher,
        ...                           short_term_targets=None, lambda_long=2.4, lambda_short=4.0, temperature=2.0)
        >>> sorted(parts), round(total.item(), 4)
        (['ce', 'long', 'short'], 0.4013)
    """
    active = [(name, teacher, mask, weight) for name, teacher, mask, weight in (
        ("long", long_term_targets, long_term_mask, lambda_long),
        ("short", short_term_targets, short_term_mask, lambda_short)) if teacher is not None and weight != 0]
    sparse = [t for _, t, _, _ in active if isinstance(t, SparseTargets)]
    if active and kl_direction == "teacher_student" and len(sparse) == len(active):
        # Per-token targets: the cross-entropy and both teachers' KL in one pass over the vocabulary.
        ce, kls = sparse_ce_and_kls(logits, targets, sparse, temperature, [m for _, _, m, _ in active], t2_scale)
    else:
        ce = cross_entropy(logits, targets)
        kls = [kl_against(logits, t, temperature, mask=m, direction=kl_direction, t2_scale=t2_scale)
               for _, t, m, _ in active]
    total = ce
    parts = {"ce": ce.detach()}
    for (name, _, _, weight), kl in zip(active, kls):
        total = total + weight * kl
        parts[name] = kl.detach()
    for name in ("long", "short"):
        parts.setdefault(name, torch.zeros((), device=ce.device))
    return total, {k: parts[k] for k in ("ce", "long", "short")}


RECORD_TARGETS = ("training_forward", "after_update_train", "after_update_eval")
LONG_TERM_TEACHERS = ("generations", "pretrained")


@torch.no_grad()
def forward_without_side_effects(model: nn.Module, inputs: Any, *, train: bool) -> torch.Tensor:
    """``model(inputs)`` without gradient, in train or eval mode, leaving batch-norm running
    statistics as they were (a forward in train mode would otherwise update them)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms]
    was_training = model.training
    try:
        for m in norms:
            m.momentum = 0.0   # running = (1 − 0)·running + 0·batch: unchanged
        model.train(train)
        return model(inputs)
    finally:
        model.train(was_training)
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            if tracked is not None and m.num_batches_tracked is not None:
                m.num_batches_tracked.copy_(tracked)


class LongShortSettings:
    """E, λ^L, λ^S, the ramp-up and the distillation options, shared by LSTSD and LSTSD (single).

    Sets ``generations`` (:class:`~lstsd.methods.settings.MiniGenerations`), ``lambda_long``,
    ``lambda_short`` and ``distillation`` (:class:`~lstsd.methods.settings.Distillation`) on the method.
    """

    # Checkpoints written before the ramp-up option existed were made without it.
    hparams_added: ClassVar[dict[str, Any]] = {"rampup_epochs": 0}
    generations: MiniGenerations
    lambda_long: float
    lambda_short: float
    distillation: Distillation
    teacher_monitor: TeacherMonitor   # the Method's

    def _set_long_short(self, generation_epochs: int, lambda_long: float, lambda_short: float,
                        temperature: float, kl_direction: KLDirection, t2_scale: bool,
                        rampup_epochs: int = 0) -> None:
        self.generations = MiniGenerations(generation_epochs, "generation_epochs (E)")
        self.lambda_long = check_weight("lambda_long", lambda_long)
        self.lambda_short = check_weight("lambda_short", lambda_short)
        self.distillation = Distillation(temperature, kl_direction, t2_scale)
        self.rampup_epochs = check_int("rampup_epochs", rampup_epochs, 0,
                                       hint=" (0, the paper's, disables the ramp-up)")

    def weight_scale(self, epoch: int) -> float:
        """The factor on λ^L and λ^S in ``epoch``: 0 in the first mini-generation (cross-entropy only,
        Algorithm 1), then 1 (the paper), or with ``rampup_epochs`` R > 0 the Gaussian ramp-up
        ``exp(−5·(1 − k/R)²)`` in the k-th distilled epoch (k = 0 in the first epoch of the second
        mini-generation), 1 from k = R on. The ramp-up is not in the paper: it is an option against
        the shock of switching distillation on at full weight (``docs/results.md``).

        Example:
            >>> m = LSTSD(10, 3, generation_epochs=2, rampup_epochs=2)
            >>> [round(m.weight_scale(e), 3) for e in range(5)]
            [0.0, 0.0, 0.007, 0.287, 1.0]
        """
        distilled = epoch - self.generations.length   # k
        return 0.0 if distilled < 0 else gaussian_rampup(distilled, self.rampup_epochs)

    def term_scales(self, epoch: int) -> tuple[float, float]:
        """The factors on λ^L and λ^S in ``epoch``: both :meth:`weight_scale` (Algorithm 1)."""
        scale = self.weight_scale(epoch)
        return scale, scale

    def long_term_age(self, epoch: int) -> float:
        """How old the long-term teacher is in ``epoch``: as old as the last epoch of the previous
        mini-generation (1 to E epochs)."""
        return float(epoch - (self.generations.index(epoch) * self.generations.length - 1))

    def _long_short_hparams(self) -> dict[str, Any]:
        return {"generation_epochs": self.generations.length, "lambda_long": self.lambda_long,
                "lambda_short": self.lambda_short, **self.distillation.hparams(), "rampup_epochs": self.rampup_epochs}

    def _monitor(self, epoch: int, logits: torch.Tensor, targets: torch.Tensor,
                 long_term: tuple[torch.Tensor | SparseTargets | None, torch.Tensor | None],
                 short_term: tuple[torch.Tensor | SparseTargets | None, torch.Tensor | None]) -> None:
        """Teacher diagnostics: the long-term teacher is :meth:`long_term_age` epochs old, the
        short-term one an epoch old."""
        long_age = self.long_term_age(epoch)
        teachers = {name: (teacher, mask, age) for name, (teacher, mask), age, weight in (
            ("long", long_term, long_age, self.lambda_long), ("short", short_term, 1, self.lambda_short)) if weight > 0}
        self.teacher_monitor.record_many(teachers, logits, targets, temperature=self.distillation.temperature)

    def _long_short_loss(self, epoch: int, logits: torch.Tensor, targets: torch.Tensor,
                         long_term: tuple[torch.Tensor | SparseTargets | None, torch.Tensor | None],
                         short_term: tuple[torch.Tensor | SparseTargets | None, torch.Tensor | None],
                         ) -> tuple[torch.Tensor, LossParts]:
        """Eq. (1) with these settings; ``(targets, mask)`` per teacher. Returns the loss and its
        weighted parts (the weights are λ times :meth:`term_scales`: 0 in the first mini-generation)."""
        d = self.distillation
        long_scale, short_scale = self.term_scales(epoch)
        lambda_long, lambda_short = self.lambda_long * long_scale, self.lambda_short * short_scale
        loss, parts = lstsd_loss(logits, targets, long_term_targets=long_term[0], long_term_mask=long_term[1],
                                 short_term_targets=short_term[0], short_term_mask=short_term[1],
                                 lambda_long=lambda_long, lambda_short=lambda_short,
                                 temperature=d.temperature, kl_direction=d.kl_direction, t2_scale=d.t2_scale)
        return loss, {"ce": (parts["ce"], 1.0), "long": (parts["long"], lambda_long),
                      "short": (parts["short"], lambda_short)}


class LSTSD(LongShortSettings, Method):
    """Long Short-Term Sample Distillation (Jiang et al., AAAI 2020, Algorithm 1).

    Args:
        num_samples: training-set size N (samples are addressed by their index in ``[0, N)``).
        num_classes: number of classes C.
        generation_epochs: E, epochs per mini-generation (paper: 6).
        lambda_long: λ^L, weight of the long-term distillation loss (paper: 2.4). 0 gives the
            Table 3 ablation "w/o Long" and no long-term bank is allocated.
        lambda_short: λ^S, weight of the short-term distillation loss (paper: 4.0). 0 gives
            "w/o Short" and no short-term bank is allocated.
        temperature: T softening both the student and the recorded targets in the distillation
            terms (paper: 2 for vision, 1 for NLP); cross-entropy uses T = 1.
        kl_direction: ``"teacher_student"`` (default, Hinton's KL(z ‖ p)) or ``"student_teacher"``
            (the paper's literal notation). See :func:`lstsd.losses.distillation_kl`.
        t2_scale: multiply the distillation terms by T².
        bank_dtype: storage dtype of the soft-target banks (fp16 default; fp32/bf16 accepted).
        record_targets: when a sample's target is recorded (the paper is open, see
            ``docs/decisions.md``): ``"training_forward"`` (default: the softened logits of the
            training forward pass, no extra cost: the snapshot "when it is selected as training
            data"), or Algorithm 1's literal line 14, ``f(x; θ)`` *after* the update: a no-grad
            forward on the same batch after the optimizer step (``end_step(model)``), in train mode
            (``"after_update_train"``, batch statistics, running statistics untouched) or eval mode
            (``"after_update_eval"``). Both cost one extra forward pass per step and need
            ``loss(..., inputs=x)`` and ``end_step(model)``.
        rampup_epochs: R; 0 (the default, the paper) switches both distillation terms on at full
            weight in the first epoch of the second mini-generation. R > 0 (not in the paper) ramps
            λ^L and λ^S in over the first R distilled epochs with Laine & Aila's Gaussian ramp-up
            (:meth:`weight_scale`), against the shock of the switch seen with the paper's weights.
        bank_format: ``"dense"`` (``N × C``, the default per sample) or ``"topk"``: the ``bank_topk``
            largest probabilities per sample and their class ids, the rest of the mass spread
            uniformly (:class:`lstsd.bank.TopKBank`), for class counts where dense banks do not fit.
            Per token: ``"sampled"`` (the default; ``"topk"`` when ``bank_topk`` is given) or
            ``"topk"`` (:mod:`lstsd.tokens`, :class:`~lstsd.methods.settings.BankSettings`).
        bank_topk: k of the top-k format (per token: default 8).
        bank_device: ``None`` (banks beside the model; per-token banks in host memory) or ``"cpu"``
            (pinned host memory, the batch's rows copied to the model's device), for banks larger
            than the accelerator's memory.
        bank_samples: draws per token of the per-token ``"sampled"`` format (default 16).
        per_token: one target per supervised token of each example, for causal language models:
            ``loss`` then takes ``B × T × V`` logits, ``B × T`` labels (-100 where there is no
            loss, shifted as Hugging Face's causal-LM loss does) and ``B`` example indices;
            ``num_classes`` is the vocabulary size (:mod:`lstsd.tokens`, :mod:`lstsd.sparse`).
        long_term_teacher: ``"generations"`` (the default, Algorithm 1: z^L is the prediction of the
            last epoch of the previous mini-generation) or ``"pretrained"`` (not in the paper: ours,
            an anchor against forgetting when fine-tuning a pretrained network): z^L holds the
            network's predictions *before* training, recorded in one extra pass over the training set
            (:meth:`~lstsd.methods.base.Method.record_initial`, eval mode; the harness makes it) and
            never rewritten; its term is on at λ^L from the first epoch (the student starts equal to
            it), the short-term one from the second mini-generation as in the paper (ramped in with
            ``rampup_epochs``). Needs ``lambda_long > 0``.
        device: initial device of the banks; they follow the logits' device on the first
            :meth:`loss` call, so they always live beside the model (unless ``bank_device="cpu"``).
        validate: check every batch (shapes, dtypes, index range, repeats). One sync per step on
            CUDA; turn off when the indices come from a trusted loader.

    Under ``torch.distributed`` (a process group initialised, e.g. by ``torchrun``) every rank keeps
    the whole banks, identical on all ranks: each step's targets are exchanged in one collective
    (:mod:`lstsd.distributed`). Nothing changes in the loop; give each rank a ``DistributedSampler``.

    Samples without a recorded target (a row never written, e.g. under ``drop_last``) get no
    distillation term. Each sample should be seen once per epoch (a shuffled pass, as in the
    paper); a row is overwritten in place, as Algorithm 1 writes ``z^S``, so a sample skipped in
    one epoch keeps its older target.

    Example:
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> from lstsd import IndexedDataset
        >>> train_set = IndexedDataset(TensorDataset(torch.randn(64, 5), torch.randint(0, 3, (64,))))
        >>> loader = DataLoader(train_set, batch_size=16, shuffle=True)
        >>> model = nn.Linear(5, 3)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> method = LSTSD(num_samples=len(train_set), num_classes=3, generation_epochs=2)
        >>> for epoch in range(4):
        ...     method.start_epoch(epoch)
        ...     for x, y, idx in loader:
        ...         loss = method.loss(model(x), y, idx)
        ...         opt.zero_grad(); loss.backward(); opt.step()
        ...     method.end_epoch()
        >>> bool(method.short_term_bank.recorded.all()), sorted(method.loss_components())
        (True, ['ce', 'long', 'short', 'total'])
    """

    name = "lstsd"
    needs_indices = True
    keeps_per_sample_state = True
    takes_per_token = True
    # Checkpoints written before the pretrained long-term teacher existed were made without it.
    hparams_added: ClassVar[dict[str, Any]] = {**LongShortSettings.hparams_added, "long_term_teacher": "generations"}

    def __init__(self, num_samples: int, num_classes: int, generation_epochs: int = 6,
                 lambda_long: float = 2.4, lambda_short: float = 4.0, temperature: float = 2.0,
                 kl_direction: KLDirection = "teacher_student", t2_scale: bool = False,
                 bank_dtype: torch.dtype | str = torch.float16, bank_format: str | None = None,
                 bank_topk: int | None = None, bank_device: str | None = None,
                 record_targets: str = "training_forward", rampup_epochs: int = 0,
                 per_token: bool = False, bank_samples: int | None = None,
                 long_term_teacher: str = "generations",
                 device: torch.device | str | None = None, validate: bool = True) -> None:
        super().__init__(num_samples, num_classes, validate=validate)
        self._set_long_short(generation_epochs, lambda_long, lambda_short, temperature, kl_direction, t2_scale,
                             rampup_epochs)
        if long_term_teacher not in LONG_TERM_TEACHERS:
            raise ValueError(f"long_term_teacher must be one of {LONG_TERM_TEACHERS}, got {long_term_teacher!r}")
        if long_term_teacher == "pretrained" and self.lambda_long == 0:
            raise ValueError("long_term_teacher='pretrained' needs lambda_long > 0: with 0 no long-term teacher is "
                             "kept")
        self.long_term_teacher = long_term_teacher
        self.needs_initial_pass = long_term_teacher == "pretrained"
        if record_targets not in RECORD_TARGETS:
            raise ValueError(f"record_targets must be one of {RECORD_TARGETS}, got {record_targets!r}")
        self.record_targets = record_targets
        if record_targets != "training_forward":   # the literal line 14: a forward after the update
            self.extra_forward_passes = 1
            self.needs_model_inputs = True
        self._pending: list[tuple[torch.Tensor, Any, int]] = []   # batches since the last optimizer step
        self.bank_settings = BankSettings(bank_format, bank_topk, bank_dtype, bank_device, bank_samples=bank_samples,
                                          per_token=per_token)
        self.bank_dtype, self.bank_format = self.bank_settings.dtype, self.bank_settings.format
        self.bank_topk, self.per_token = self.bank_settings.topk, per_token
        self.accepts_sequences = per_token
        if per_token and record_targets != "training_forward":
            raise ValueError("per_token=True records each token's target from the training forward pass: use "
                             "record_targets='training_forward'")

        # z^L and z^S. A bank whose weight is 0 (the Table 3 ablations) is never read: not allocated.
        def bank(weight: float) -> Bank | TokenBank | None:
            return self.bank_settings.make(num_samples, num_classes, device=device) if weight > 0 else None
        self.long_term_bank = bank(self.lambda_long)
        self.short_term_bank = bank(self.lambda_short)

    # ------------------------------------------------------------ Algorithm 1
    def compute_loss(self, epoch: int, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None, *,
                     model: nn.Module | None, inputs: Any) -> tuple[torch.Tensor, LossParts]:
        """The loss of one mini-batch (Algorithm 1, lines 5-11), then record its targets (lines 14-17).

        ``logits`` are the ``B × C`` outputs of the network on the batch, ``indices`` the ``B``
        sample indices (the same index every epoch for the same sample).
        """
        assert indices is not None   # needs_indices: Method.loss refuses a batch without them
        distilling = self.generations.index(epoch) > 0           # line 6: m > 1
        if distilling or self.needs_initial_pass:                # (or the pretrained z^L from the start)
            long_term = self._read(self.long_term_bank, indices)    # z^L_i, line 7
            short_term = self._read(self.short_term_bank if distilling else None, indices)  # z^S_i, line 8
            loss, parts = self._long_short_loss(epoch, logits, targets, long_term, short_term)  # line 9
            self._monitor(epoch, logits, targets, long_term, short_term)
        else:                                                    # line 11: first mini-generation
            loss, parts = self._long_short_loss(epoch, logits, targets, (None, None), (None, None))

        # Lines 14-17: this snapshot's softened prediction becomes the sample's next teacher.
        if self.record_targets == "training_forward":
            self._record(epoch, indices, logits)
        else:                                                    # after the update: in end_step
            self._pending.append((indices, inputs, epoch))   # several under gradient accumulation
        return loss, parts

    def end_step(self, model: nn.Module) -> None:
        """With ``record_targets="after_update_*"``: record ``f(x; θ)`` of the batches trained on since the
        last optimizer step (one, or several under gradient accumulation)."""
        pending, self._pending = self._pending, []
        for indices, inputs, epoch in pending:
            logits = forward_without_side_effects(model, inputs, train=self.record_targets == "after_update_train")
            self._record(epoch, indices, logits)

    def _record(self, epoch: int, indices: torch.Tensor, logits: torch.Tensor) -> None:
        long_term_writes = self.generations.is_last_epoch(epoch) and not self.needs_initial_pass
        banks = [bank for bank, writes in ((self.short_term_bank, True),                        # line 14
                                           (self.long_term_bank, long_term_writes))             # lines 15-16
                 if bank is not None and writes]
        if banks:   # every rank's rows, once each, under torch.distributed; this batch's otherwise
            written, rows = self.row_exchange(indices, *banks[0].encode_logits(logits, self.distillation.temperature),
                                              growable=self.per_token)
            finite = finite_rows(*rows) if len(banks) > 1 else None   # the same rows go to both banks
            for bank in banks:
                bank.store(written, *rows, finite=finite)

    # ------------------------------------------------------------ the pretrained long-term teacher (ours)
    def _record_initial(self, logits: torch.Tensor, indices: torch.Tensor) -> None:
        """z^L_i ← softmax(f(x_i; θ_0) / T) before training (``long_term_teacher="pretrained"``)."""
        bank = self.long_term_bank
        assert bank is not None   # lambda_long > 0, checked in __init__
        written, rows = self.row_exchange(indices, *bank.encode_logits(logits, self.distillation.temperature),
                                          growable=self.per_token)
        bank.store(written, *rows)

    def start_epoch(self, epoch: int, *, resume_fix: str | None = None) -> None:
        if epoch == 0 and self.next_epoch == 0 and self.needs_initial_pass:
            assert self.long_term_bank is not None
            if not bool(self.long_term_bank.recorded.any()):
                raise RuntimeError("long_term_teacher='pretrained' distils from the network's predictions before "
                                   "training: call method.record_initial(model(x), y, idx) for every training batch "
                                   "(eval mode, no gradient) before start_epoch(0)")
        super().start_epoch(epoch, resume_fix=resume_fix)

    def term_scales(self, epoch: int) -> tuple[float, float]:
        """The factors on λ^L and λ^S; with the pretrained long-term teacher λ^L is whole from the
        first epoch and only the short-term term follows :meth:`weight_scale`.

        Example:
            >>> m = LSTSD(10, 3, generation_epochs=1, long_term_teacher="pretrained")
            >>> m.term_scales(0), m.term_scales(1)
            ((1.0, 0.0), (1.0, 1.0))
        """
        scale = self.weight_scale(epoch)
        return (1.0 if self.needs_initial_pass else scale), scale

    def long_term_age(self, epoch: int) -> float:
        """Epochs since the long-term teacher was recorded; the pretrained one is older by an epoch
        each epoch (1 in the first, as if recorded in an epoch before it)."""
        return float(epoch + 1) if self.needs_initial_pass else super().long_term_age(epoch)

    def end_epoch(self, model: nn.Module | None = None) -> None:
        if self._pending:
            raise RuntimeError("record_targets='after_update_*' records in end_step(model): call it after every "
                               "optimizer step")
        super().end_epoch(model)

    @staticmethod
    def _read(bank: Bank | TokenBank | None,
              indices: torch.Tensor) -> tuple[torch.Tensor | SparseTargets | None, torch.Tensor | None]:
        return (None, None) if bank is None else bank.read(indices)

    def hparams(self) -> dict[str, Any]:
        return {**super().hparams(), **self._long_short_hparams(), **self.bank_settings.hparams(),
                "record_targets": self.record_targets, "long_term_teacher": self.long_term_teacher}
