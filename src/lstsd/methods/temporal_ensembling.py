"""Temporal Ensembling (Laine & Aila, "Temporal Ensembling for Semi-Supervised Learning",
ICLR 2017 / arXiv 2016), as the LSTSD paper uses it: a per-sample moving average of the
network's past predictions serves as each sample's teacher.

The LSTSD paper, "Baselines":

    Temporal Ensembles saves each sample's moving average probability produced by the neural
    network when the sample was selected as training data to update the parameters in the
    previous training process, rather than saving the parameters of the neural network.
    Specifically, the moving average probability is computed as Z = αZ + (1 − α)z at every
    epoch, where Z denotes the moving average probability and z denotes the probability at the
    current time step. As suggested by the original paper, we set α = 0.6.

Mapping of Laine & Aila's Algorithm 2 onto this file (per sample i, t_i = times i was trained on)::

    read        ẑ_i = Z_i / (1 − α^{t_i})                  bias correction, before this batch's update
    loss        L = CE + w(e)·λ·KL(ẑ_i ‖ softmax(f(x_i)/T))   only samples with t_i > 0 are distilled
    record      Z_i ← α·Z_i + (1 − α)·softmax(f(x_i)/T);  t_i ← t_i + 1
    ramp-up     w(e) = exp(−5·(1 − e/R)²) for e < R = rampup_epochs, else 1 (R = 0: w ≡ 1)

Choices: z comes from the training forward pass (detached), so the method needs no extra
forward pass; Laine & Aila accumulate the epoch's predictions and fold them into Z at the end of
the epoch, which is the same when each sample is seen once per epoch, and the per-sample count
makes the bias correction right for samples skipped in some epoch (``drop_last``). The consistency
cost is the distillation KL with temperature T rather than the original squared error, like every
baseline of the LSTSD paper; ``lambda_teacher`` defaults to 1.0 (the LSTSD paper grid-searched
it without reporting the value). Ramp-up is off by default (Laine & Aila ramp over 80 epochs).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..bank import SoftTargetBank
from ..losses import KLDirection, cross_entropy
from ..sparse import mix_sparse, sparse_ce_and_kls
from ..tokens import KEY_BITS, TokenBank
from .base import LossParts, Method
from .settings import DEFAULT_TOKEN_TOPK, Distillation, check_fraction, check_int, check_weight, gaussian_rampup


class TemporalEnsembling(Method):
    """Temporal Ensembling: distil each sample toward the bias-corrected EMA of its past predictions.

    Args:
        num_samples: training-set size N.
        num_classes: number of classes C.
        ensemble_momentum: α of Z ← αZ + (1 − α)z (paper: 0.6).
        lambda_teacher: weight of the distillation term (default 1.0).
        rampup_epochs: epochs of the Gaussian ramp-up of the weight (0, the default, disables it).
        temperature: T of the recorded predictions and of the student in the KL (default 2).
        kl_direction: ``"teacher_student"`` (default) or ``"student_teacher"``.
        t2_scale: multiply the distillation term by T².
        per_token: one ensemble per supervised token of each example, for causal LMs (as
            :class:`lstsd.LSTSD`'s ``per_token``): the bias-corrected ensemble ẑ is kept as a
            top-``bank_topk`` distribution (the rest of its mass spread uniformly) in host memory,
            updated as ẑ_t = w·ẑ_{t−1} + (1 − w)·z with w = α(1 − α^{t−1})/(1 − α^t), which is
            Z_t/(1 − α^t) of Laine & Aila's Z_t = αZ_{t−1} + (1 − α)z; truncating to the top-k
            after each update moves the dropped mass to the uniform tail (an approximation).
        bank_topk: k of the per-token ensemble (default 8).
        device: initial device of the store (it follows the logits' device).
        validate: check every batch.

    The ensemble Z is kept in float32 (the bias correction divides by 1 − α^t, which would
    amplify half-precision rounding in early epochs).

    Example:
        >>> model = nn.Linear(5, 3)
        >>> x, y, idx = torch.randn(8, 5), torch.randint(0, 3, (8,)), torch.arange(8)
        >>> method = TemporalEnsembling(num_samples=8, num_classes=3)
        >>> for epoch in range(2):
        ...     method.start_epoch(epoch)
        ...     loss = method.loss(model(x), y, idx)
        ...     method.end_epoch()
        >>> method.counts.tolist()                   # t_i: each sample trained on twice
        [2, 2, 2, 2, 2, 2, 2, 2]
    """

    name = "temporal_ensembling"
    needs_indices = True
    keeps_per_sample_state = True
    takes_per_token = True

    def __init__(self, num_samples: int, num_classes: int, ensemble_momentum: float = 0.6,
                 lambda_teacher: float = 1.0, rampup_epochs: int = 0, temperature: float = 2.0,
                 kl_direction: KLDirection = "teacher_student", t2_scale: bool = False, per_token: bool = False,
                 bank_topk: int | None = None, device: torch.device | str | None = None,
                 validate: bool = True) -> None:
        super().__init__(num_samples, num_classes, validate=validate)
        self.ensemble_momentum = check_fraction("ensemble_momentum (α)", ensemble_momentum, include_one=False)
        self.lambda_teacher = check_weight("lambda_teacher", lambda_teacher)
        self.rampup_epochs = check_int("rampup_epochs", rampup_epochs, 0, hint=" (0 disables the ramp-up)")
        self.distillation = Distillation(temperature, kl_direction, t2_scale)
        self.per_token = self.accepts_sequences = per_token
        self.bank_topk = bank_topk
        self.ensemble: SoftTargetBank | TokenBank
        if per_token:   # ẑ itself, a distribution, per supervised token (float32: it is mixed every epoch)
            k = DEFAULT_TOKEN_TOPK if bank_topk is None else check_int("bank_topk", bank_topk, 1)
            self.ensemble = TokenBank(num_samples, num_classes, bank_format="topk", k=k, dtype=torch.float32)
            self.bank_topk = k
        else:           # Z (not bias-corrected, so rows sum to 1 − α^t: the bank's probability checks are off)
            if bank_topk is not None:
                raise ValueError("bank_topk is for per_token=True; the per-sample ensemble is dense")
            self.ensemble = SoftTargetBank(num_samples, num_classes, torch.float32, device, validate=False)
        self.counts: torch.Tensor
        self.register_buffer("counts", torch.zeros(num_samples, dtype=torch.int64, device=device))   # t_i (examples)

    def weight(self, epoch: int) -> float:
        """The distillation weight of ``epoch``: ``λ·w(epoch)``."""
        return self.lambda_teacher * gaussian_rampup(epoch, self.rampup_epochs)

    def targets(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(Z_i / (1 − α^{t_i}), t_i > 0)``: the bias-corrected targets and which are defined.

        Rows never trained on come back as zeros with the mask False.
        """
        assert isinstance(self.ensemble, SoftTargetBank)   # per sample (per token: _per_token_loss)
        z, recorded = self.ensemble.read(indices)
        t = self.counts[indices.to(self.counts.device)].to(z.dtype)
        correction = 1.0 - torch.pow(torch.full_like(t, self.ensemble_momentum), t)
        z = torch.where(recorded[:, None], z / correction.clamp_min(1e-12)[:, None], torch.zeros_like(z))
        return z, recorded

    def compute_loss(self, epoch: int, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None, *,
                     model: nn.Module | None, inputs: Any) -> tuple[torch.Tensor, LossParts]:
        """``CE + λ·w(e)·KL(ẑ ‖ p)`` over the samples seen before, then fold this prediction into Z."""
        assert indices is not None   # needs_indices: Method.loss refuses a batch without them
        if self.per_token:
            return self._per_token_loss(epoch, logits, targets, indices)

        ce = cross_entropy(logits, targets)
        weight = self.weight(epoch)
        target, mask = self.targets(indices)                      # before this batch's update
        kd = self.distillation.kl(logits, target, mask)
        # The ensemble weighs the prediction k epochs old by (1 − α)α^(k−1): 1/(1 − α) epochs old on average.
        self.teacher_monitor.record("ensemble", target, logits, targets, temperature=self.distillation.temperature,
                                    mask=mask, age=1 / (1 - self.ensemble_momentum))
        loss = ce + weight * kd if weight > 0 else ce

        # Every rank's predictions, once each, under torch.distributed (this batch's otherwise).
        written, (z,) = self.row_exchange(indices, self.distillation.soften(logits))
        assert isinstance(self.ensemble, SoftTargetBank)
        old, _ = self.ensemble.read(written)
        self.ensemble.write(written, torch.lerp(z, old, self.ensemble_momentum))   # αZ + (1 − α)z
        self.counts[written] += torch.isfinite(z).all(dim=1)   # a non-finite row is not written (Bank.store)

        return loss, {"ce": (ce, 1.0), "kd": (kd, weight)}

    def _per_token_loss(self, epoch: int, logits: torch.Tensor, targets: torch.Tensor,
                        keys: torch.Tensor) -> tuple[torch.Tensor, LossParts]:
        """The same loss against the per-token ensembles ẑ (sparse), then ẑ ← w·ẑ + (1 − w)·z."""
        assert isinstance(self.ensemble, TokenBank)
        weight = self.weight(epoch)
        target, mask = self.ensemble.read(keys)                   # ẑ, before this batch's update
        d = self.distillation
        if d.kl_direction == "teacher_student":
            ce, (kd,) = sparse_ce_and_kls(logits, targets, [target], d.temperature, [mask], d.t2_scale)
        else:
            ce, kd = cross_entropy(logits, targets), d.kl(logits, target, mask)
        self.teacher_monitor.record("ensemble", target, logits, targets, temperature=d.temperature, mask=mask,
                                    age=1 / (1 - self.ensemble_momentum))
        loss = ce + weight * kd if weight > 0 else ce
        with torch.no_grad():
            written, rows = self.row_exchange(keys, *self.ensemble.encode_logits(logits, d.temperature), growable=True)
            examples = (written >> KEY_BITS).to(self.counts.device)
            seen = self.counts[examples].double()                 # t − 1 for this write
            alpha = self.ensemble_momentum
            mix = (alpha * (1 - alpha ** seen) / (1 - alpha ** (seen + 1))).float()   # 0 the first time
            old, _ = self.ensemble.read(written.to(self.counts.device), device=self.counts.device)
            new = self.ensemble.targets(rows[0].to(self.counts.device), rows[1].to(self.counts.device),
                                        torch.ones(written.shape[0], dtype=torch.bool, device=self.counts.device))
            probs, ids = mix_sparse(old, new, mix, self.ensemble.k)
            self.ensemble.store(written, probs, ids, finite=torch.isfinite(rows[0].float()).all(dim=1))
            self.counts[torch.unique(examples)] += 1
        return loss, {"ce": (ce, 1.0), "kd": (kd, weight)}

    def hparams(self) -> dict[str, Any]:
        extra = {"per_token": True, "bank_topk": self.bank_topk} if self.per_token else {}
        return {**super().hparams(), "ensemble_momentum": self.ensemble_momentum,
                "lambda_teacher": self.lambda_teacher, "rampup_epochs": self.rampup_epochs,
                **self.distillation.hparams(), **extra}
