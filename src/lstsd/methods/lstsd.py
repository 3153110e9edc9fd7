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

from typing import Any

import torch
from torch import nn

from ..bank import SoftTargetBank, resolve_bank_dtype
from ..losses import KLDirection, check_kl_direction, check_temperature, distillation_kl
from .base import Method, check_weight


def lstsd_loss(logits: torch.Tensor, targets: torch.Tensor, *,
               long_term_targets: torch.Tensor | None, short_term_targets: torch.Tensor | None,
               lambda_long: float, lambda_short: float, temperature: float,
               long_term_mask: torch.Tensor | None = None, short_term_mask: torch.Tensor | None = None,
               kl_direction: KLDirection = "teacher_student",
               t2_scale: bool = False) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. (1) of the paper, the functional form: ``L^C + λ^L·L^L + λ^S·L^S``.

    A teacher given as ``None`` (or with weight 0) contributes nothing. Masks mark the samples that
    have a recorded target; the others get no distillation term.

    Returns:
        ``(total, {"ce": L^C, "long": L^L, "short": L^S})`` with the parts detached.
    """
    ce = Method.cross_entropy(logits, targets)
    total = ce
    parts = {"ce": ce.detach()}
    for name, teacher, mask, weight in (("long", long_term_targets, long_term_mask, lambda_long),
                                        ("short", short_term_targets, short_term_mask, lambda_short)):
        if teacher is None or weight == 0:
            parts[name] = torch.zeros((), device=ce.device)
            continue
        kl = distillation_kl(logits, teacher, temperature, mask=mask, direction=kl_direction, t2_scale=t2_scale)
        total = total + weight * kl
        parts[name] = kl.detach()
    return total, parts


def set_long_short_settings(method: Method, generation_epochs: int, lambda_long: float, lambda_short: float,
                            temperature: float, kl_direction: str, t2_scale: bool) -> None:
    """Validate and set E, λ^L, λ^S, T and the KL options (shared by LSTSD and LSTSD (single))."""
    if not isinstance(generation_epochs, int) or isinstance(generation_epochs, bool) or generation_epochs < 1:
        raise ValueError(f"generation_epochs (E) must be an int >= 1, got {generation_epochs!r}")
    method.generation_epochs = generation_epochs
    method.lambda_long = check_weight("lambda_long", lambda_long)
    method.lambda_short = check_weight("lambda_short", lambda_short)
    method.temperature = check_temperature(temperature)
    method.kl_direction = check_kl_direction(kl_direction)
    method.t2_scale = bool(t2_scale)


def long_short_hparams(method: Any) -> dict[str, Any]:
    return {"generation_epochs": method.generation_epochs, "lambda_long": method.lambda_long,
            "lambda_short": method.lambda_short, "temperature": method.temperature,
            "kl_direction": method.kl_direction, "t2_scale": method.t2_scale}


class LSTSD(Method):
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
        device: initial device of the banks; they follow the logits' device on the first
            :meth:`loss` call, so they always live beside the model.
        validate: check every batch (shapes, dtypes, index range, repeats). One sync per step on
            CUDA; turn off when the indices come from a trusted loader.

    Samples without a recorded target (a row never written, e.g. under ``drop_last``) get no
    distillation term. Each sample should be seen once per epoch (a shuffled pass, as in the
    paper); a row is overwritten in place, as Algorithm 1 writes ``z^S``, so a sample skipped in
    one epoch keeps its older target.

    Example:
        >>> policy = LSTSD(num_samples=len(train_set), num_classes=100)
        >>> for epoch in range(epochs):
        ...     policy.start_epoch(epoch)
        ...     for x, y, idx in loader:
        ...         loss = policy.loss(model(x), y, idx)
        ...         opt.zero_grad(); loss.backward(); opt.step()
        ...     policy.end_epoch()
    """

    name = "lstsd"

    def __init__(self, num_samples: int, num_classes: int, generation_epochs: int = 6,
                 lambda_long: float = 2.4, lambda_short: float = 4.0, temperature: float = 2.0,
                 kl_direction: KLDirection = "teacher_student", t2_scale: bool = False,
                 bank_dtype: torch.dtype | str = torch.float16, device: torch.device | str | None = None,
                 validate: bool = True) -> None:
        super().__init__(num_samples, num_classes, validate=validate)
        set_long_short_settings(self, generation_epochs, lambda_long, lambda_short, temperature, kl_direction,
                                t2_scale)
        self.bank_dtype = resolve_bank_dtype(bank_dtype)
        # z^L and z^S. A bank whose weight is 0 (the Table 3 ablations) is never read: not allocated.
        self.long_term_bank = (SoftTargetBank(num_samples, num_classes, bank_dtype, device, validate=False)
                               if self.lambda_long > 0 else None)
        self.short_term_bank = (SoftTargetBank(num_samples, num_classes, bank_dtype, device, validate=False)
                                if self.lambda_short > 0 else None)

    # ------------------------------------------------------------ Algorithm 1
    def mini_generation(self, epoch: int) -> int:
        """0-based mini-generation of ``epoch``: ``epoch // E``."""
        return epoch // self.generation_epochs

    def is_last_epoch_of_mini_generation(self, epoch: int) -> bool:
        """Whether ``epoch`` records long-term targets (Algorithm 1, line 15: e = E)."""
        return (epoch + 1) % self.generation_epochs == 0

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor, *,
             model: nn.Module | None = None, inputs: Any = None) -> torch.Tensor:
        """The loss of one mini-batch (Algorithm 1, lines 5-11), then record its targets (lines 14-17).

        Args:
            logits: ``B × C`` outputs of the network on the batch (the autograd graph is kept).
            targets: ``B`` ground-truth class indices.
            indices: ``B`` sample indices in ``[0, num_samples)``, the same index every epoch for
                the same sample (e.g. from :class:`lstsd.data.IndexedDataset`).
        """
        epoch = self._require_epoch("loss()")
        indices = self._check_batch(logits, targets, indices)
        self._keep_banks_on(logits.device)
        indices = indices.to(logits.device)

        if self.mini_generation(epoch) > 0:                      # line 6: m > 1
            long_term = self._read(self.long_term_bank, indices)    # z^L_i, line 7
            short_term = self._read(self.short_term_bank, indices)  # z^S_i, line 8
            loss, parts = lstsd_loss(                               # line 9
                logits, targets,
                long_term_targets=long_term[0], long_term_mask=long_term[1],
                short_term_targets=short_term[0], short_term_mask=short_term[1],
                lambda_long=self.lambda_long, lambda_short=self.lambda_short,
                temperature=self.temperature, kl_direction=self.kl_direction, t2_scale=self.t2_scale)
        else:                                                    # line 11: first mini-generation
            loss, parts = lstsd_loss(logits, targets, long_term_targets=None, short_term_targets=None,
                                     lambda_long=0.0, lambda_short=0.0, temperature=self.temperature)

        # Lines 14-17: this snapshot's softened prediction becomes the sample's next teacher.
        snapshot = torch.softmax(logits.detach().float() / self.temperature, dim=1)
        if self.short_term_bank is not None:
            self.short_term_bank.write(indices, snapshot)
        if self.long_term_bank is not None and self.is_last_epoch_of_mini_generation(epoch):
            self.long_term_bank.write(indices, snapshot)

        parts["total"] = loss.detach()
        self._components = parts
        return loss

    # ------------------------------------------------------------ plumbing
    @staticmethod
    def _read(bank: SoftTargetBank | None, indices: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return (None, None) if bank is None else bank.read(indices)

    def _banks(self) -> dict[str, SoftTargetBank]:
        return {name: bank for name, bank in (("long_term_bank", self.long_term_bank),
                                               ("short_term_bank", self.short_term_bank)) if bank is not None}

    def _keep_banks_on(self, device: torch.device) -> None:
        for bank in self._banks().values():
            if bank.device != device:
                bank.to(device)

    def hparams(self) -> dict[str, Any]:
        return {**super().hparams(), **long_short_hparams(self),
                "bank_dtype": str(self.bank_dtype).removeprefix("torch.")}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update({name: bank.state_dict() for name, bank in self._banks().items()})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        for name, bank in self._banks().items():
            if name not in state:
                raise ValueError(f"LSTSD state_dict is missing {name!r}")
            bank.load_state_dict(state[name])
