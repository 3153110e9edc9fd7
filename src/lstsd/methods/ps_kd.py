"""Progressive Self-Knowledge Distillation, PS-KD (Kim, Ji, Yoon & Hwang, "Self-Knowledge
Distillation with Progressive Refinement of Targets", ICCV 2021). Not a baseline of the LSTSD
paper (which predates it); included as a later one-generation method built on the same idea of
per-sample targets recorded in the previous epoch.

Kim et al., Eq. (5)–(6): the target of sample x at epoch t is

    q_t(x) = (1 − α_t)·y + α_t·P^{t−1}(x),      α_t = α_T · t / T

where y is the one-hot label, P^{t−1}(x) the network's prediction for x in the previous epoch
and T the number of epochs. Mapping onto this file (``epoch`` is 0-based, t = epoch + 1)::

    read        P_i = bank[i]                         recorded in the previous epoch (T = 1 softmax)
    target      q_i = (1 − α_t)·onehot(y_i) + α_t·P_i   one-hot alone for samples with no record
    loss        L = soft_cross_entropy(logits, q)
    record      bank[i] ← softmax(f(x_i; θ))           from the training forward pass, detached

α_t uses t = epoch + 1 so that it rises linearly to α_T in the last epoch, as the authors' code
(``alpha_T * ((epoch + 1) / end_epoch)``) does. The run's length comes from
``setup(model, epochs=...)``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..losses import cross_entropy, soft_cross_entropy
from ..sparse import SparseTargets, sparse_cross_entropy
from .base import LossParts, Method
from .settings import BankSettings, check_fraction, check_int


def pskd_targets(targets: torch.Tensor, previous: torch.Tensor, recorded: torch.Tensor, alpha: float,
                 num_classes: int) -> torch.Tensor:
    """Kim et al., Eq. (5): ``(1 − α)·onehot(y) + α·P_prev`` where ``recorded``, else ``onehot(y)``.

    Example:
        >>> pskd_targets(torch.tensor([0]), torch.tensor([[0.5, 0.5]]), torch.tensor([True]), 0.4, 2)
        tensor([[0.8000, 0.2000]])
    """
    onehot = F.one_hot(targets.long(), num_classes).to(previous.dtype)
    return torch.where(recorded[:, None], torch.lerp(onehot, previous, alpha), onehot)


class PSKD(Method):
    """PS-KD: soft cross-entropy against a mix of the label and last epoch's own prediction.

    Args:
        num_samples: training-set size N.
        num_classes: number of classes C.
        alpha_T: α_T, the mixing weight reached in the last epoch (Kim et al.: 0.8).
        bank_dtype: storage dtype of the recorded predictions (fp16 default; fp32/bf16 accepted).
        bank_format, bank_topk, bank_device, bank_samples, per_token: the bank's format and place, and
            per-token targets for causal LMs, as for :class:`lstsd.LSTSD`.
        device: initial device of the bank (it follows the logits' device).
        validate: check every batch.

    ``setup(model, epochs=E)`` must give the run's total number of epochs (α_t depends on it).

    Example:
        >>> model = nn.Linear(5, 3)
        >>> x, y, idx = torch.randn(8, 5), torch.randint(0, 3, (8,)), torch.arange(8)
        >>> method = PSKD(num_samples=8, num_classes=3)
        >>> method.setup(model, epochs=10)                   # α_t rises to α_T over the 10 epochs
        >>> method.start_epoch(0)
        >>> loss = method.loss(model(x), y, idx)
        >>> method.alpha(0), method.alpha(9)
        (0.08, 0.8)
    """

    name = "ps_kd"
    needs_indices = True
    keeps_per_sample_state = True
    takes_per_token = True

    def __init__(self, num_samples: int, num_classes: int, alpha_T: float = 0.8,  # noqa: N803 (paper's name)
                 bank_dtype: torch.dtype | str = torch.float16, bank_format: str | None = None,
                 bank_topk: int | None = None, bank_device: str | None = None, per_token: bool = False,
                 bank_samples: int | None = None, device: torch.device | str | None = None,
                 validate: bool = True) -> None:
        super().__init__(num_samples, num_classes, validate=validate)
        self.alpha_T = check_fraction("alpha_T", alpha_T)
        self.bank_settings = BankSettings(bank_format, bank_topk, bank_dtype, bank_device, bank_samples=bank_samples,
                                          per_token=per_token)
        self.bank_dtype, self.bank_format = self.bank_settings.dtype, self.bank_settings.format
        self.bank_topk, self.per_token = self.bank_settings.topk, per_token
        self.accepts_sequences = per_token
        self.predictions = self.bank_settings.make(num_samples, num_classes, device=device)
        self.epochs: int | None = None

    def setup(self, model: nn.Module, *, epochs: int | None = None, steps_per_epoch: int | None = None) -> None:
        """Record the run's total number of epochs T (required: α_t = α_T·t/T)."""
        if epochs is None:
            raise ValueError("PS-KD needs the run's length: call setup(model, epochs=total_epochs)")
        self.epochs = check_int("epochs", epochs, 1)

    def alpha(self, epoch: int) -> float:
        """α_t = α_T·(epoch + 1)/epochs for the 0-based ``epoch``."""
        if self.epochs is None:
            raise RuntimeError("PS-KD does not know the run's length: call setup(model, epochs=total_epochs) first")
        if not 0 <= epoch < self.epochs:
            raise ValueError(f"epoch {epoch} is outside the run of {self.epochs} epochs given to setup()")
        return self.alpha_T * (epoch + 1) / self.epochs

    def start_epoch(self, epoch: int, *, resume_fix: str | None = None) -> None:
        self.alpha(epoch)   # fail early if the run's length is unknown or exceeded
        super().start_epoch(epoch, resume_fix=resume_fix)

    def compute_loss(self, epoch: int, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None, *,
                     model: nn.Module | None, inputs: Any) -> tuple[torch.Tensor, LossParts]:
        """Soft cross-entropy against the progressive target, then record this epoch's prediction.

        Parts: ``ce`` (hard-label CE, weight 1 − α_t) and ``kd`` (CE against the recorded
        predictions, 0 for rows without one; weight α_t); the loss is their weighted sum once every
        row has a record.
        """
        assert indices is not None   # needs_indices: Method.loss refuses a batch without them
        targets = targets.to(logits.device)

        previous, recorded = self.predictions.read(indices)
        self.teacher_monitor.record("previous", previous, logits, targets, temperature=1.0, mask=recorded, age=1)
        alpha = self.alpha(epoch)
        if isinstance(previous, SparseTargets):       # per token: the same loss, never dense over V
            return self._sparse_loss(logits, targets, indices, previous, recorded, alpha)
        q = pskd_targets(targets, previous, recorded, alpha, self.num_classes)
        loss = soft_cross_entropy(logits, q)

        with torch.no_grad():
            log_p = F.log_softmax(logits.detach().float(), dim=1)
            ce = -log_p.gather(1, targets.long()[:, None]).mean()
            kd = -(previous * log_p).sum() / logits.shape[0]   # unrecorded rows of the bank are zeros
            # every rank's predictions, once each, under torch.distributed (this batch's otherwise)
            written, rows = self.row_exchange(indices, *self.predictions.encode(log_p.exp()))
            self.predictions.store(written, *rows)
        return loss, {"ce": (ce, 1.0 - alpha), "kd": (kd, alpha)}

    def _sparse_loss(self, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor,
                     previous: SparseTargets, recorded: torch.Tensor, alpha: float) -> tuple[torch.Tensor, LossParts]:
        """Eq. (5) against per-token sparse predictions: ``(1 − α)·CE + α·CE(P_prev)`` on recorded
        tokens, CE alone on the others (``q`` is then the one-hot label)."""
        ce_rows = torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none")
        kd = sparse_cross_entropy(logits, previous, mask=recorded)       # 0 for tokens without a record
        weight = torch.where(recorded, torch.full_like(ce_rows, 1.0 - alpha), torch.ones_like(ce_rows))
        loss = (weight * ce_rows).sum() / logits.shape[0] + alpha * kd
        with torch.no_grad():
            written, rows = self.row_exchange(indices, *self.predictions.encode_logits(logits, 1.0), growable=True)
            self.predictions.store(written, *rows)
        return loss, {"ce": (cross_entropy(logits.detach(), targets), 1.0 - alpha), "kd": (kd, alpha)}

    def hparams(self) -> dict[str, Any]:
        return {**super().hparams(), "alpha_T": self.alpha_T, "epochs": self.epochs,
                **self.bank_settings.hparams()}
