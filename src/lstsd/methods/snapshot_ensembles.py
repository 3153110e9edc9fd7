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

from ._snapshots import CyclicSnapshotMethod, frozen_probs, snapshot_of
from .settings import check_int
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
        >>> model = nn.Linear(5, 3)
        >>> opt = torch.optim.SGD(model.parameters(), lr=0.1)
        >>> x, y, idx = torch.randn(8, 5), torch.randint(0, 3, (8,)), torch.arange(8)
        >>> method = SnapshotEnsembles(num_samples=8, num_classes=3, cycle_epochs=1)
        >>> method.setup(model)
        >>> sched = method.configure_lr_scheduler(opt, epochs=3, steps_per_epoch=1)
        >>> for epoch in range(3):
        ...     method.start_epoch(epoch)
        ...     loss = method.loss(model(x), y, idx)
        ...     opt.zero_grad(); loss.backward(); opt.step(); sched.step()
        ...     method.end_epoch(model)
        >>> len(method.snapshots), sorted(method.eval_predictions(model, x))
        (3, ['ensemble', 'model'])
    """

    name = "snapshot_ensembles"

    def __init__(self, num_samples: int, num_classes: int, cycle_epochs: int = 40, eta_min: float = 0.0,
                 max_snapshots: int | None = None, validate: bool = True) -> None:
        super().__init__(num_samples, num_classes, cycle_epochs, eta_min, validate=validate)
        if max_snapshots is not None:
            check_int("max_snapshots", max_snapshots, 1, hint=" (or None: keep all)")
        self.max_snapshots = max_snapshots
        self.snapshots = nn.ModuleList()

    # Plain cross-entropy: the cyclic schedule and the snapshots do the work.
    compute_loss = Vanilla.compute_loss

    def end_epoch(self, model: nn.Module | None = None) -> None:
        """Take a snapshot at the end of each cycle."""
        epoch, model = self._closing_epoch(model)
        if self.generations.is_last_epoch(epoch):
            self.snapshots.append(snapshot_of(model))
            if self.max_snapshots is not None:
                del self.snapshots[:-self.max_snapshots]
        super().end_epoch(model)

    @torch.no_grad()
    def eval_predictions(self, model: nn.Module, inputs: Any) -> dict[str, torch.Tensor]:
        """``{"model": the current network, "ensemble": mean of the snapshots' softmax}``."""
        current = torch.softmax(model(inputs).float(), dim=1)
        if not len(self.snapshots):
            return {"model": current, "ensemble": current}
        ensemble = torch.stack([frozen_probs(s, inputs) for s in self.snapshots]).mean(dim=0)
        return {"model": current, "ensemble": ensemble}

    def hparams(self) -> dict[str, Any]:
        return {**super().hparams(), "max_snapshots": self.max_snapshots}

    def _prepare_to_load(self, state_dict: dict[str, Any], prefix: str) -> None:
        saved = {int(k.split(".", 1)[0]) for k in self._submodule_keys(state_dict, prefix, "snapshots")}
        self.snapshots = nn.ModuleList(self.new_snapshot() for _ in range(len(saved)))
        super()._prepare_to_load(state_dict, prefix)
