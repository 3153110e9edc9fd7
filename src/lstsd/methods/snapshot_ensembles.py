"""Snapshot Ensembles (Huang, Li, Pleiss, Liu, Hopcroft & Weinberger, "Snapshot Ensembles:
Train 1, get M for free", ICLR 2017).

The LSTSD paper, "Baselines":

    Snapshot Ensembles divides the training process into several mini-generations, in each of
    which the model is trained with a cyclic learning rate to force the model to converge to
    different well-performing local minima. After training, the last snapshots in each
    mini-generation are ensemble to boost the performance.

Mapping onto this file::

    configure_lr_scheduler   α(t) = α0/2·(cos(π·mod(t, ⌈T/M⌉)/⌈T/M⌉) + 1)   per iteration, restarted
                                                                          every cycle_epochs epochs
    loss                     L = CE                                       (training is vanilla)
    end_epoch                if (epoch + 1) % cycle_epochs == 0: keep a frozen snapshot of θ
    eval_predictions         {"model": softmax(f(x; θ)), "ensemble": mean_m softmax(f(x; θ_m))}

The LSTSD paper uses 40-epoch cycles (following Yang et al. 2019). ``max_snapshots`` keeps only
the last M snapshots (Huang et al. ensemble the last M); by default all are kept. Before the first
snapshot the ensemble is the current network alone.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._snapshots import (
    CyclicSnapshotMethod,
    frozen_probs,
    restore_snapshot,
    snapshot_of,
    snapshot_state,
)
from .vanilla import Vanilla


class SnapshotEnsembles(CyclicSnapshotMethod):
    """Snapshot Ensembles: cyclic cosine LR, a snapshot at the end of every cycle, evaluation by
    averaging the snapshots' softmax outputs.

    Args:
        num_samples: training-set size N.
        num_classes: number of classes C.
        cycle_epochs: epochs per cycle (paper setting: 40).
        eta_min: LR at the end of each cycle (Huang et al.: 0).
        max_snapshots: keep the last M snapshots (``None``, the default: all of them).
        validate: check every batch.

    Example:
        >>> policy = SnapshotEnsembles(num_samples=len(train_set), num_classes=100, cycle_epochs=40)
        >>> policy.setup(model)
        >>> sched = policy.configure_lr_scheduler(opt, epochs=160, steps_per_epoch=len(loader))
        >>> ...                                   # train; policy.end_epoch(model) after each epoch
        >>> probs = policy.eval_predictions(model, x_test)["ensemble"]
    """

    name = "snapshot_ensembles"

    def __init__(self, num_samples: int, num_classes: int, cycle_epochs: int = 40, eta_min: float = 0.0,
                 max_snapshots: int | None = None, validate: bool = True) -> None:
        super().__init__(num_samples, num_classes, cycle_epochs, eta_min, validate=validate)
        if max_snapshots is not None and (not isinstance(max_snapshots, int) or isinstance(max_snapshots, bool)
                                          or max_snapshots < 1):
            raise ValueError(f"max_snapshots must be None (keep all) or an int >= 1, got {max_snapshots!r}")
        self.max_snapshots = max_snapshots
        self.snapshots: list[nn.Module] = []

    # Plain cross-entropy: the cyclic schedule and the snapshots do the work.
    loss = Vanilla.loss

    def end_epoch(self, model: nn.Module | None = None) -> None:
        """Take a snapshot at the end of each cycle."""
        epoch, model = self._closing_epoch(model)
        if self.is_last_epoch_of_cycle(epoch):
            self.snapshots.append(snapshot_of(model))
            if self.max_snapshots is not None:
                del self.snapshots[:-self.max_snapshots]
        super().end_epoch(model)

    @torch.no_grad()
    def eval_predictions(self, model: nn.Module, inputs: Any) -> dict[str, torch.Tensor]:
        """``{"model": the current network, "ensemble": mean of the snapshots' softmax}``."""
        current = torch.softmax(model(inputs).float(), dim=1)
        if not self.snapshots:
            return {"model": current, "ensemble": current}
        ensemble = torch.stack([frozen_probs(s, inputs) for s in self.snapshots]).mean(dim=0)
        return {"model": current, "ensemble": ensemble}

    def hparams(self) -> dict[str, Any]:
        return {**super().hparams(), "max_snapshots": self.max_snapshots}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["snapshots"] = [snapshot_state(s) for s in self.snapshots]
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if not isinstance(state.get("snapshots"), list):
            raise ValueError("SnapshotEnsembles state_dict is missing the 'snapshots' list")
        self.snapshots = [restore_snapshot(self._model, s) for s in state["snapshots"]]
