"""Any registered method (LSTSD, the baselines) inside a PyTorch Lightning ``LightningModule``.

Install with ``pip install -e '.[lightning]'`` in a clone (the ``lightning`` package; a standalone
``pytorch_lightning`` install works too). Three pieces, because a Lightning ``Callback`` cannot
change the loss:

* :class:`LSTSDCallback` holds the method, calls its epoch and step hooks, and puts its full
  state (banks, teachers, settings, the open epoch) into Lightning's own checkpoints through the
  callback's ``state_dict``/``load_state_dict``; ``trainer.fit(..., ckpt_path=...)`` restores it;
* :func:`training_loss`, called in ``training_step``, returns the method's loss for the batch
  (and records the batch's soft targets); it refuses to run outside a training step, so no bank
  row is written during validation, testing or prediction;
* :func:`configure_optimizers`, returned from ``configure_optimizers``, adds the method's own LR
  schedule (the cyclic cosine of the snapshot methods), stepped every optimizer step.

::

    class Model(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = make_network()
        def training_step(self, batch, batch_idx):
            x, y, idx = batch                                   # lstsd.IndexedDataset yields the index
            return training_loss(self, self.net(x), y, idx, inputs=x)
        def configure_optimizers(self):
            return configure_optimizers(self, torch.optim.SGD(self.parameters(), lr=0.1))

    callback = LSTSDCallback("lstsd", num_samples=len(train_set), num_classes=10, network="net")
    L.Trainer(max_epochs=12, callbacks=[callback]).fit(Model(), loader)

Where the pitfalls are handled:

* **The method is not part of the module.** It lives in the callback, so the DDP strategy does not
  broadcast its banks from rank 0 at every forward (``Method`` docstring). Under any distributed
  strategy that initialises ``torch.distributed`` (``ddp``, ``ddp_spawn``), each ``loss()``
  exchanges the step's rows between the ranks in one collective (:mod:`lstsd.distributed`), so
  the banks stay identical on every rank; Lightning's ``DistributedSampler`` gives every rank the
  same number of steps, as that exchange requires.
* **Gradient accumulation.** :func:`training_loss` returns the batch's mean loss; Lightning divides
  it by ``accumulate_grad_batches`` once (``outputs["loss"]`` in ``on_train_batch_end`` is already
  divided). Every batch's rows are written whether or not the optimizer steps; Mean Teacher's EMA
  (``end_step``) follows the optimizer steps (``trainer.global_step``), not the batches.
* **Checkpoints written while an epoch is open** (``ModelCheckpoint`` saves in
  ``on_validation_end``, before ``on_train_epoch_end``) are resumed exactly: see
  :mod:`lstsd.integrations._common`.
* **Teacher networks.** Mean Teacher, Snapshot Distillation and LSTSD (single) run a teacher on
  the batch: pass ``inputs=`` to :func:`training_loss`. Their teachers are copies of the network
  named by ``network=`` (an attribute of the module whose ``forward(inputs)`` returns logits;
  default: the LightningModule itself, which then must not hold large attributes such as data
  sets, since it is copied). They are refused under sharded strategies (FSDP, DeepSpeed), whose
  parameters are not whole on a rank.

Example (runs in a few seconds; ``enable_*=False`` only keeps the doctest's output quiet):
    >>> import lightning.pytorch as L
    >>> import torch
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> import lstsd
    >>> class Tiny(L.LightningModule):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.net = torch.nn.Linear(4, 3)
    ...     def training_step(self, batch, batch_idx):
    ...         x, y, idx = batch
    ...         return training_loss(self, self.net(x), y, idx)
    ...     def configure_optimizers(self):
    ...         return configure_optimizers(self, torch.optim.SGD(self.parameters(), lr=0.1))
    >>> data = lstsd.IndexedDataset(TensorDataset(torch.randn(32, 4), torch.randint(0, 3, (32,))))
    >>> callback = LSTSDCallback("lstsd", num_samples=32, num_classes=3, generation_epochs=1, network="net")
    >>> trainer = L.Trainer(max_epochs=2, callbacks=[callback], logger=False, enable_checkpointing=False,
    ...                     enable_progress_bar=False, enable_model_summary=False, accelerator="cpu")
    >>> trainer.fit(Tiny(), DataLoader(data, batch_size=8))
    >>> callback.method.next_epoch, bool(callback.method.short_term_bank.recorded.all())
    (2, True)
"""

from __future__ import annotations

from collections.abc import Sized
from typing import Any

import torch
from torch import nn

from ..methods import Method
from ._common import MethodDriver, build_method, import_framework

pl = import_framework("lightning.pytorch", "pytorch_lightning", extra="lightning")

__all__ = ["LSTSDCallback", "configure_optimizers", "eval_predictions", "training_loss"]

_SHARDED = ("FSDP", "DeepSpeed", "ModelParallel")
_Callback: Any = pl.Callback   # a base class from the framework imported at run time


class LSTSDCallback(_Callback):
    """Drives a method's hooks from a Lightning ``Trainer`` and checkpoints its state.

    Args:
        method: a registered method name (see :func:`lstsd.available_methods`) or a built
            :class:`lstsd.Method`.
        num_samples: training-set size (the samples' indices are ``0 … num_samples − 1``);
            required with a name.
        num_classes: number of classes; required with a name.
        network: name of the LightningModule attribute that holds the network (``"net"``), or
            ``None`` for the LightningModule itself. Teacher-forward methods copy it and run the
            copy on ``inputs``; snapshot methods snapshot it.
        log_components: log the loss's parts (``lstsd/ce``, ``lstsd/short``, …) as epoch means.
        log_teachers: log each teacher's diagnostics once per epoch (``teacher/short_quality``,
            ``teacher/short_kl``, …; :mod:`lstsd.diagnostics`): is the teacher good, and different
            from the student?
        **settings: the method's settings (``generation_epochs=6, lambda_long=2.4, …``).

    The callback's ``state_dict`` (Lightning's checkpoint entry ``"LSTSDCallback"``) holds the
    method's ``state_dict()`` and the epoch open when it was written. Use one per Trainer.
    """

    def __init__(self, method: str | Method = "lstsd", *, num_samples: int | None = None,
                 num_classes: int | None = None, network: str | None = None, log_components: bool = True,
                 log_teachers: bool = True, **settings: Any) -> None:
        super().__init__()
        self.method = build_method(method, num_samples=num_samples, num_classes=num_classes, settings=settings,
                                   where="LSTSDCallback")
        if network is not None and not isinstance(network, str):
            raise TypeError(f"LSTSDCallback: network must be the name of the LightningModule attribute that holds "
                            f"the network (e.g. network='net'), got {type(network).__name__}")
        self.network = network
        self.log_components = log_components
        self.log_teachers = log_teachers
        self._driver = MethodDriver(
            self.method, where="LSTSDCallback",
            fix="resume with trainer.fit(..., ckpt_path=...) from a checkpoint of a run that had this LSTSDCallback, "
                "or start a new run with a new LSTSDCallback",
            index_fix="wrap the training set in lstsd.IndexedDataset so batches are (x, y, idx), and call "
                      "training_loss(self, logits, y, idx)",
            inputs_fix="pass the network's inputs, training_loss(self, logits, y, idx, inputs=x)")
        self._schedulers: list[Any] = []      # schedules made by configure_optimizers() for this method
        self._global_step: int | None = None

    # ------------------------------------------------------------------ lookup
    @staticmethod
    def of(trainer: Any) -> LSTSDCallback:
        """The trainer's one :class:`LSTSDCallback` (a clear error if there is none or several)."""
        found = [cb for cb in getattr(trainer, "callbacks", []) if isinstance(cb, LSTSDCallback)]
        if len(found) != 1:
            raise RuntimeError(
                "no LSTSDCallback in this Trainer: add one, e.g. Trainer(callbacks=[LSTSDCallback('lstsd', "
                "num_samples=len(train_set), num_classes=C)])" if not found else
                f"{len(found)} LSTSDCallbacks in this Trainer; use exactly one")
        return found[0]

    def network_of(self, pl_module: nn.Module) -> nn.Module:
        """The network teachers copy: ``pl_module.<network>``, or the module itself."""
        if self.network is None:
            return pl_module
        net = getattr(pl_module, self.network, None)
        if not isinstance(net, nn.Module):
            raise AttributeError(f"LSTSDCallback(network={self.network!r}): the LightningModule has no nn.Module "
                                 f"attribute {self.network!r}; name the attribute that holds the network")
        return net

    # ------------------------------------------------------------------ the loss
    def loss(self, pl_module: Any, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None = None,
             *, inputs: Any = None) -> torch.Tensor:
        """The method's loss for a training batch (see :func:`training_loss`)."""
        trainer = pl_module.trainer
        if not trainer.training or trainer.sanity_checking or not pl_module.training:
            raise RuntimeError("training_loss() was called outside a training step (validation, test, predict or "
                               "the sanity check): bank rows are written by training steps only; use "
                               "lstsd.losses.cross_entropy(logits, y) in validation_step/test_step")
        self._driver.check_loss_call(indices, inputs)
        loss = self.method.loss(logits, targets, indices, model=self.network_of(pl_module), inputs=inputs)
        if self.log_components:
            pl_module.log_dict({f"lstsd/{k}": v for k, v in self.method.loss_components().items()},
                               on_step=False, on_epoch=True, batch_size=logits.shape[0],
                               sync_dist=trainer.world_size > 1)   # averaged over ranks once, at epoch end
        return loss

    def configure_optimizers(self, pl_module: Any, optimizer: torch.optim.Optimizer,
                             lr_scheduler: Any = None) -> Any:
        """See :func:`configure_optimizers`."""
        trainer = pl_module.trainer
        if not self.method.schedules_lr:
            return optimizer if lr_scheduler is None else {"optimizer": optimizer, "lr_scheduler": lr_scheduler}
        epochs = trainer.max_epochs
        if epochs is None or epochs < 1:
            raise ValueError(f"method {self.method.name!r} schedules the LR per epoch: set Trainer(max_epochs=...)")
        _ = trainer.estimated_stepping_batches      # loads the training data, so its length is known
        scheduler = self._driver.lr_schedule(
            optimizer, epochs=epochs, batches=self._batches(trainer), accumulation=trainer.accumulate_grad_batches,
            replaces=None if lr_scheduler is None else "the lr_scheduler passed to configure_optimizers()")
        self._schedulers.append(scheduler)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if stage != "fit":
            return
        strategy = type(trainer.strategy).__name__
        self._driver.refuse_sharded(strategy if any(s.lower() in strategy.lower() for s in _SHARDED) else None)

    @staticmethod
    def _batches(trainer: Any) -> int | None:
        batches = trainer.num_training_batches
        return None if batches == float("inf") else int(batches)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        dataset = getattr(trainer.train_dataloader, "dataset", None)
        self._driver.check_dataset_size(len(dataset) if isinstance(dataset, Sized) else None)
        epochs = trainer.max_epochs if trainer.max_epochs is not None and trainer.max_epochs > 0 else None
        self._driver.set_up(self.network_of(pl_module), epochs=epochs, batches=self._batches(trainer),
                            accumulation=trainer.accumulate_grad_batches, device=pl_module.device)
        if self.method.schedules_lr:
            in_use = [cfg.scheduler for cfg in trainer.lr_scheduler_configs]
            if not any(s is mine for s in in_use for mine in self._schedulers):
                raise RuntimeError(f"method {self.method.name!r} needs its own LR schedule (cyclic cosine per "
                                   "mini-generation): return lstsd.integrations.lightning.configure_optimizers(self, "
                                   "optimizer) from the LightningModule's configure_optimizers")
        self._global_step = trainer.global_step

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._driver.begin(trainer.current_epoch, self.network_of(pl_module))

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if trainer.global_step != self._global_step:      # the optimizer stepped (not every batch accumulates)
            self._global_step = trainer.global_step
            self.method.end_step(self.network_of(pl_module))

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        teachers = self._driver.end(self.network_of(pl_module))
        if teachers and self.log_teachers:      # already summed over the ranks: the same on every rank
            # Synced so that Lightning does not warn once per key under DDP; the max over ranks of
            # values that are equal on every rank is that value, exactly (a mean could round).
            pl_module.log_dict({f"teacher/{k}": float(v) for k, v in teachers.items()}, on_step=False,
                               on_epoch=True, sync_dist=trainer.world_size > 1, reduce_fx="max")

    def state_dict(self) -> dict[str, Any]:
        if self._driver.pending is not None:     # restored but not applied yet: keep it as it was
            return self._driver.pending
        return self._driver.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Applied in on_train_start, after the method's setup (teachers are rebuilt from the network)
        # and after every strategy has restored the weights.
        self._driver.stash(state_dict)


def training_loss(pl_module: Any, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None = None,
                  *, inputs: Any = None) -> torch.Tensor:
    """The method's loss for this training batch; call it in ``training_step`` and return it.

    Args:
        pl_module: the LightningModule (``self``).
        logits: the network's ``B × C`` outputs on the batch.
        targets: ``B`` class indices.
        indices: ``B`` sample indices (from :class:`lstsd.IndexedDataset`); required by the methods
            that keep per-sample state (LSTSD, Temporal Ensembling, PS-KD).
        inputs: the network's inputs on the batch; required by the methods that run a teacher on
            it (Mean Teacher, Snapshot Distillation, LSTSD (single)).

    Returns the batch's mean loss (Lightning divides it by ``accumulate_grad_batches`` itself).
    Raises outside a training step, so validation never writes a bank row.
    """
    return LSTSDCallback.of(pl_module.trainer).loss(pl_module, logits, targets, indices, inputs=inputs)


def configure_optimizers(pl_module: Any, optimizer: torch.optim.Optimizer, lr_scheduler: Any = None) -> Any:
    """What ``configure_optimizers`` returns: ``optimizer`` with the method's LR schedule, if it has one.

    For the snapshot methods (cyclic cosine restarted every mini-generation) this is
    ``{"optimizer": optimizer, "lr_scheduler": {"scheduler": ..., "interval": "step"}}``, stepped
    once per optimizer step; without it they refuse to train, and a ``lr_scheduler`` given here is
    replaced (with a warning). Other methods keep yours: ``lr_scheduler`` (a scheduler or a
    Lightning scheduler dict) is passed through.
    """
    return LSTSDCallback.of(pl_module.trainer).configure_optimizers(pl_module, optimizer, lr_scheduler)


@torch.no_grad()
def eval_predictions(pl_module: Any, inputs: Any) -> dict[str, torch.Tensor]:
    """The method's predictors on ``inputs`` (``{"model": probs, ...}``; Snapshot Ensembles add
    ``"ensemble"``, Mean Teacher ``"teacher"``), for ``validation_step``. Writes nothing."""
    callback = LSTSDCallback.of(pl_module.trainer)
    return callback.method.eval_predictions(callback.network_of(pl_module), inputs)
