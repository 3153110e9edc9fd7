"""The interface every method implements; see :mod:`lstsd.methods` for the overview."""

from __future__ import annotations

import abc
import warnings
from typing import Any, ClassVar

import torch
from torch import nn

from .._checks import check_batch, check_sequence_batch, check_sizes
from ..diagnostics import TeacherMonitor
from ..distributed import RowExchange
from ..sparse import shared_student_stats
from ..tokens import TokenBank, supervised_positions, token_keys

LossParts = dict[str, tuple[torch.Tensor, float]]
"""The parts of a mini-batch loss by name (``"ce"``, ``"long"``, ...), each ``(value, weight)``.

The loss is ``Σ weight·value`` over the parts; a value may keep its autograd graph (the template
detaches it for :meth:`Method.loss_components`).
"""


class Method(nn.Module, abc.ABC):
    """Base class of a one-generation teacher–student method (vanilla, LSTSD, the paper's baselines).

    A trainer drives a method through these hooks, in this order::

        method.setup(model, epochs=E, steps_per_epoch=S)      # once, before training / resuming
        for x, y, idx in loader:                              # only if method.needs_initial_pass,
            method.record_initial(model(x), y, idx)           # eval mode, no gradient, not on resume
        scheduler = method.configure_lr_scheduler(opt, epochs=..., steps_per_epoch=...)
        for epoch in range(start, epochs):
            method.start_epoch(epoch)
            for x, y, idx in loader:
                logits = model(x)
                loss = method.loss(logits, y, idx, model=model, inputs=x)
                loss.backward(); opt.step(); opt.zero_grad()
                method.end_step(model)
                scheduler.step()                              # schedules step every iteration
            method.end_epoch(model)
            probs = method.eval_predictions(model, x_test)    # {"model": ..., maybe "teacher"/"ensemble"}

    :meth:`loss` is a template: it checks the call (an epoch is open, the indices and inputs the
    method declares it needs are given, the batch is valid), brings the method's state to the
    logits' device, calls the subclass's :meth:`compute_loss` and keeps the parts it returns for
    :meth:`loss_components` and :meth:`loss_weights`. Subclasses implement :meth:`compute_loss`
    (never ``loss``) and override the other hooks they need.

    **What a method needs is declared**, as class attributes (an instance may override one when
    its settings change it), so that callers never guess it from signatures; the integrations,
    the harness and the generic tests read them, and the generic tests check each one against
    what the method does:

    =========================  ===================================================================
    ``needs_indices``          ``loss`` must get the batch's sample indices (per-sample targets)
    ``keeps_per_sample_state`` the method holds rows indexed by sample (banks, counts): they are
                               written by training steps and exchanged under torch.distributed
    ``extra_forward_passes``   network forward passes per training step beyond the student's own
    ``needs_model_inputs``     ``loss`` must get ``model=`` and ``inputs=`` (it runs the network
                               or a teacher on the batch)
    ``copies_network``         its teachers are copies of the network (snapshots, an EMA): the
                               network must be whole on each process (no FSDP/DeepSpeed sharding)
    ``schedules_lr``           :meth:`configure_lr_scheduler` returns the method's own schedule
    ``accepts_sequences``      ``loss`` takes a causal LM's ``B × T × V`` logits and ``B × T``
                               labels (per-token targets; LSTSD, PS-KD, Temporal Ensembling with
                               ``per_token=True``)
    ``takes_per_token``        the method has a ``per_token`` setting that makes it accept sequences
    ``needs_initial_pass``     before epoch 0 the caller runs the network over the training set once
                               (eval mode, no gradient) and gives every batch to
                               :meth:`record_initial` (LSTSD's pretrained long-term teacher)
    =========================  ===================================================================

    A method is an ``nn.Module`` (as timm's EMA models are): its banks, counters and teacher
    networks are registered buffers and submodules, so ``.to(device)``, ``state_dict()`` and
    ``load_state_dict()`` are PyTorch's own and hold everything needed to continue bit-identically.
    The settings and the epoch counter travel as the module's extra state; loading checks them
    first and refuses a checkpoint of another method or other settings. Per-sample state follows
    the logits' device by itself on the first :meth:`loss` of a batch on another device.
    Subclasses that create teachers lazily (snapshots) rebuild them before loading in
    :meth:`_prepare_to_load`. A method is not called like a network: it has no ``forward``. Under
    DDP keep it outside the wrapped module (or pass ``broadcast_buffers=False``): DDP would
    otherwise broadcast its banks from rank 0 at every forward.

    Attributes:
        name: the registry name (set by :func:`lstsd.methods.create_method`).
        hparams_added: settings added after checkpoints had been written without them, each with
            the value those checkpoints were trained with; loading such a checkpoint reads it so.
    """

    name: str = "method"
    needs_indices: bool = False
    keeps_per_sample_state: bool = False
    extra_forward_passes: int = 0
    needs_model_inputs: bool = False
    copies_network: bool = False
    schedules_lr: bool = False
    accepts_sequences: bool = False
    takes_per_token: bool = False
    needs_initial_pass: bool = False
    hparams_added: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "loss" in vars(cls):
            raise TypeError(f"{cls.__name__} overrides Method.loss, the template that checks the batch and keeps the "
                            "loss's parts; implement compute_loss(epoch, logits, targets, indices, model=, inputs=) "
                            "instead")

    def __init__(self, num_samples: int, num_classes: int, *, validate: bool = True) -> None:
        super().__init__()
        check_sizes(num_samples, num_classes)
        self.num_samples = num_samples
        self.num_classes = num_classes
        self.validate = validate
        # Under torch.distributed, per-sample rows to write are exchanged so that banks stay identical
        # on every rank; set ``method.row_exchange = RowExchange(group)`` for another process group.
        self.row_exchange = RowExchange()
        # Teacher quality / difference from the student, per epoch (lstsd.diagnostics).
        self.teacher_monitor = TeacherMonitor()
        self.epoch: int | None = None   # the epoch in progress, None between epochs
        self.next_epoch = 0             # the epoch start_epoch expects next
        self._components: dict[str, torch.Tensor] = {}
        self._weights: dict[str, float] = {}

    # ------------------------------------------------------------------ hooks
    def setup(self, model: nn.Module, *, epochs: int | None = None, steps_per_epoch: int | None = None) -> None:
        """Called once before training (and before :meth:`load_state_dict` on resume).

        Receives the network being trained (teachers copy it here) and, when the trainer knows
        them, the run's length (for schedules that depend on the total, e.g. PS-KD's α_t).
        """

    def configure_lr_scheduler(self, optimizer: torch.optim.Optimizer, *, epochs: int,
                               steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler | None:
        """The LR schedule this method requires, stepped once per iteration; ``None`` = the trainer's."""
        return None

    def start_epoch(self, epoch: int, *, resume_fix: str | None = None) -> None:
        """Begin ``epoch`` (0-based). Epochs must run in order; resume with :meth:`load_state_dict`.

        A method with no history started past epoch 0 warns (its soft targets are lost); a caller
        that knows how to resume in its framework (the integrations) passes ``resume_fix``, which
        makes that an error naming the fix.
        """
        if not isinstance(epoch, int) or epoch < 0:
            raise ValueError(f"epoch must be a non-negative int, got {epoch!r}")
        if self.epoch is not None:
            raise RuntimeError(f"start_epoch({epoch}) called while epoch {self.epoch} is still open; "
                               "call end_epoch() first, or build a new method object after an interrupted run")
        if epoch != self.next_epoch:
            fix = resume_fix or ("to resume a run, load the method's state_dict from the same checkpoint as the "
                                 "model")
            if self.next_epoch != 0:
                raise ValueError(f"epochs must run in order: the method has trained {self.next_epoch} epochs, "
                                 f"expected start_epoch({self.next_epoch}), got {epoch}; {fix}")
            if resume_fix is not None:
                raise ValueError(f"training starts at epoch {epoch} but the method has no history (its soft targets "
                                 f"were not restored); {fix}")
            warnings.warn(f"{type(self).__name__} starts at epoch {epoch} with no history; if you are resuming a "
                          "run, load the method's state_dict saved with the model, or its soft targets are lost",
                          stacklevel=2)
        self.epoch = epoch
        self.teacher_monitor.reset()

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None = None, *,
             model: nn.Module | None = None, inputs: Any = None,
             num_items_in_batch: int | torch.Tensor | None = None) -> torch.Tensor:
        """The training loss of one mini-batch (a scalar); also records what the method needs.

        Args:
            logits: ``B × C`` outputs of the network on the batch (the autograd graph is kept), or,
                for a method that ``accepts_sequences``, a causal LM's ``B × T × V`` logits.
            targets: ``B`` ground-truth class indices, or ``B × T`` token labels with -100 where
                there is no loss (unshifted, as a Hugging Face causal LM takes them: position t's
                logits predict label t + 1).
            indices: ``B`` sample (example) indices in ``[0, num_samples)``, the same index every
                epoch for the same sample (e.g. from :class:`lstsd.data.IndexedDataset`); required
                when the method declares ``needs_indices``.
            model, inputs: the network and its inputs on the batch; required when the method
                declares ``needs_model_inputs`` (it runs a teacher or the network on the batch).
            num_items_in_batch: sequences only: the supervised tokens of the whole accumulated
                batch (the Hugging Face Trainer's argument); the loss is then the sum over this
                batch's tokens divided by it, as the model's own loss is. ``None``: the mean.
        """
        epoch = self._require_epoch("loss()")
        if indices is None and self.needs_indices:
            raise ValueError(f"method {self.name!r} keeps per-sample soft targets and needs each sample's index: "
                             "call loss(logits, targets, indices) with indices from lstsd.IndexedDataset")
        if self.needs_model_inputs and inputs is None:
            raise ValueError(f"method {self.name!r} runs a network on the batch: pass the batch's inputs, "
                             "loss(logits, targets, indices, model=model, inputs=x)")
        if isinstance(logits, torch.Tensor) and logits.dim() == 3:
            return self._sequence_loss(epoch, logits, targets, indices, model, inputs, num_items_in_batch)
        indices = self._check_rows(logits, targets, indices)
        loss, parts = self.compute_loss(epoch, logits, targets, indices, model=model, inputs=inputs)
        return self._keep(loss, parts)

    def _keep(self, loss: torch.Tensor, parts: LossParts) -> torch.Tensor:
        self._components = {name: value.detach() for name, (value, _) in parts.items()}
        self._components["total"] = loss.detach()
        self._weights = {name: float(weight) for name, (_, weight) in parts.items()}
        return loss

    @torch.no_grad()
    def record_initial(self, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor) -> None:
        """Record the network's predictions on one training batch *before* training, for a method
        that declares ``needs_initial_pass`` (e.g. LSTSD with ``long_term_teacher="pretrained"``).

        Call it for every batch of one pass over the training set (eval mode, no gradient), after
        :meth:`setup` and before the first :meth:`start_epoch`; not when resuming (the checkpoint
        holds what was recorded). Takes what :meth:`loss` takes: ``B × C`` logits, or a causal LM's
        ``B × T × V`` logits and ``B × T`` labels, with the batch's sample indices.
        """
        if not self.needs_initial_pass:
            raise RuntimeError(f"method {self.name!r} records nothing before training (needs_initial_pass is "
                               "False): do not call record_initial()")
        if self.epoch is not None or self.next_epoch != 0:
            raise RuntimeError("record_initial() is for the pass before training: call it before the first "
                               "start_epoch(0), and not when resuming (the method's state_dict holds what it recorded)")
        if indices is None:
            raise ValueError(f"method {self.name!r} keeps per-sample targets: call record_initial(logits, targets, "
                             "indices) with indices from lstsd.IndexedDataset")
        if logits.dim() == 3:
            rows, _, keys = self._token_rows(logits, targets, indices)
        else:
            rows, keys = logits, self._check_rows(logits, targets, indices)
        assert keys is not None
        self._record_initial(rows.detach(), keys)   # even with no rows: a collective under torch.distributed

    def _record_initial(self, logits: torch.Tensor, indices: torch.Tensor) -> None:
        """Store the checked rows of :meth:`record_initial` (``n × C`` logits, int64 indices or token
        keys on their device); methods that declare ``needs_initial_pass`` implement it."""
        raise NotImplementedError(f"{type(self).__name__} declares needs_initial_pass but does not implement "
                                  "_record_initial")

    def _check_rows(self, logits: torch.Tensor, targets: torch.Tensor,
                    indices: torch.Tensor | None) -> torch.Tensor | None:
        """:meth:`_check_batch` of ``B × C`` logits, refused for a method built per token."""
        if self.accepts_sequences and getattr(self, "per_token", False):
            raise ValueError(f"method {self.name!r} was built with per_token=True: pass a causal LM's B × T × V "
                             "logits and B × T labels")
        return self._check_batch(logits, targets, indices)

    def _token_rows(self, logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor | None,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """A causal LM's batch as rows: the supervised positions (after the causal shift) of the
        ``B × T × V`` logits as an ``n × V`` batch, their labels, and their token keys
        (:mod:`lstsd.tokens`; ``None`` without indices), after the checks and the token counts."""
        if not self.accepts_sequences:
            fix = ("build it with per_token=True" if hasattr(self, "bank_settings") else
                   "it has no per-token form; use lstsd, lstsd_wo_long, lstsd_wo_short, ps_kd, temporal_ensembling, "
                   "label_smoothing or vanilla")
            raise ValueError(f"method {self.name!r} got B × T × V logits (a causal LM's) but takes B × C logits: {fix}")
        if self.validate:
            indices = check_sequence_batch(logits, labels, indices, num_samples=self.num_samples,
                                           num_classes=self.num_classes)
        self._follow_device(logits.device)
        mask, token_targets = supervised_positions(labels.to(logits.device))
        # n × V, one logits-sized copy at most; index_select's backward (an index_add) is cheaper than a mask's.
        rows = logits.reshape(-1, logits.shape[2]).index_select(0, mask.reshape(-1).nonzero().squeeze(1))
        keys = None
        if indices is not None:
            indices = indices.to(logits.device).long()
            keys = token_keys(indices, mask)
            counts = mask.sum(dim=1).to(torch.int32)
            for bank in self.modules():
                if isinstance(bank, TokenBank):
                    bank.check_counts(indices, counts)
        return rows, token_targets, keys

    def _sequence_loss(self, epoch: int, logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor | None,
                       model: nn.Module | None, inputs: Any, num_items_in_batch: Any) -> torch.Tensor:
        """A causal LM's batch (:meth:`_token_rows`): :meth:`compute_loss` runs on its supervised
        rows; the result is normalised as the model's own loss (the mean over the tokens, or their
        sum over ``num_items_in_batch``)."""
        rows, token_targets, keys = self._token_rows(logits, labels, indices)
        if rows.shape[0] == 0:                                       # no supervised token in this batch
            zero = logits.sum() * 0.0
            return self._keep(zero, {"ce": (zero, 1.0)})
        with shared_student_stats():   # one log-sum-exp of the student per temperature for every term
            loss, parts = self.compute_loss(epoch, rows, token_targets, keys, model=model, inputs=inputs)
        if num_items_in_batch is not None:                           # sum over these tokens / all of the batch's
            scale = rows.shape[0] / torch.as_tensor(num_items_in_batch, dtype=torch.float32, device=loss.device)
            loss = loss * scale
            parts = {name: (value * scale, weight) for name, (value, weight) in parts.items()}
        return self._keep(loss, parts)

    @abc.abstractmethod
    def compute_loss(self, epoch: int, logits: torch.Tensor, targets: torch.Tensor, indices: torch.Tensor | None, *,
                     model: nn.Module | None, inputs: Any) -> tuple[torch.Tensor, LossParts]:
        """The method's loss of a batch already checked by :meth:`loss`, and its parts with their weights.

        ``indices`` are int64 on the logits' device (``None`` only for methods that do not need
        them), and the method's state is on that device. Returns ``(loss, {name: (value, weight)})``
        with ``loss == Σ weight·value`` where every sample has its teachers' targets.
        """

    def end_step(self, model: nn.Module) -> None:
        """Called after every optimizer step (Mean Teacher updates its EMA here)."""

    def end_epoch(self, model: nn.Module | None = None) -> None:
        """Close the epoch opened by :meth:`start_epoch` (snapshots are taken here)."""
        self.next_epoch = self._require_epoch("end_epoch()") + 1
        self.epoch = None

    @torch.no_grad()
    def eval_predictions(self, model: nn.Module, inputs: Any) -> dict[str, torch.Tensor]:
        """Class probabilities of every predictor this method reports, the headline one first.

        The default is the network itself, ``{"model": softmax(model(inputs))}``; Snapshot
        Ensembles add ``"ensemble"``, Mean Teacher ``"teacher"``. The caller sets eval mode.
        """
        return {"model": torch.softmax(model(inputs).float(), dim=1)}

    def teacher_diagnostics(self, reduce: Any = None) -> dict[str, float]:
        """Each teacher's quality, difference from the student, coverage and age over the epoch so
        far (:mod:`lstsd.diagnostics`; one host synchronisation). ``{}`` for a method without a teacher.

        ``reduce`` sums the raw per-process sums under torch.distributed (e.g. an all-reduce).
        """
        return self.teacher_monitor.summary(reduce)

    def loss_components(self) -> dict[str, torch.Tensor]:
        """Detached scalar tensors of the last loss's parts (e.g. ``ce``, ``long``, ``short``).

        They stay on the device, so logging them costs no synchronisation until read.
        """
        return dict(self._components)

    def loss_weights(self) -> dict[str, float]:
        """The weight of each part of the last loss (the keys of :meth:`loss_components` but
        ``total``), e.g. ``{"ce": 1.0, "long": 2.4, "short": 4.0}`` for LSTSD after its first
        mini-generation and ``{"ce": 0.9, "smooth": 0.1}`` for label smoothing; they follow the
        method's schedules (LSTSD's ramp-up, PS-KD's α_t)."""
        return dict(self._weights)

    # ------------------------------------------------------------------ state
    def hparams(self) -> dict[str, Any]:
        """The settings a checkpoint must agree on to be resumed by this method."""
        return {"num_samples": self.num_samples, "num_classes": self.num_classes}

    def get_extra_state(self) -> dict[str, Any]:
        """Saved in ``state_dict()`` beside the tensors: the method, its settings, the next epoch."""
        return {"method": self.name, "hparams": self.hparams(), "next_epoch": self.next_epoch}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.next_epoch = int(state["next_epoch"])

    def check_compatible(self, extra_state: Any) -> None:
        """Raise ``ValueError`` unless ``extra_state`` (from :meth:`get_extra_state`) is this method's
        with the same settings; called by ``load_state_dict`` before anything is copied."""
        if not isinstance(extra_state, dict) or not {"method", "hparams", "next_epoch"} <= set(extra_state):
            raise ValueError("not a method state_dict: it lacks the method's '_extra_state' "
                             "(method, hparams, next_epoch); pass the dict that method.state_dict() returned")
        if extra_state["method"] != self.name:
            raise ValueError(f"this checkpoint was written by method {extra_state['method']!r}, not {self.name!r}")
        mine, theirs = self.hparams(), {**self.hparams_added, **extra_state["hparams"]}
        diff = {k: (theirs.get(k), mine.get(k)) for k in set(mine) | set(theirs) if theirs.get(k) != mine.get(k)}
        if diff:
            listing = ", ".join(f"{k}: saved {a!r} vs now {b!r}" for k, (a, b) in sorted(diff.items()))
            raise ValueError(f"cannot resume {self.name}: the checkpoint comes from a run with other settings "
                             f"({listing}); build the method with the saved settings")

    def _prepare_to_load(self, state_dict: dict[str, Any], prefix: str) -> None:
        """Create (or drop) lazily built submodules so that they match the keys of ``state_dict``."""

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # Runs before the submodules load (PyTorch loads a module, then its children), so a
        # checkpoint of another method or other settings is refused before anything is copied,
        # whether this method is loaded directly or as a submodule of a user's module.
        self.check_compatible(state_dict.get(prefix + "_extra_state"))
        if self.epoch is not None:
            raise RuntimeError("load_state_dict() called in the middle of an epoch; call it between epochs")
        self._prepare_to_load(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _submodule_keys(self, state_dict: dict[str, Any], prefix: str, name: str) -> set[str]:
        """What follows ``prefix + name + "."`` in the keys of ``state_dict`` (for :meth:`_prepare_to_load`)."""
        head = f"{prefix}{name}."
        return {k[len(head):] for k in state_dict if k.startswith(head)}

    def _follow_device(self, device: torch.device) -> None:
        """Move the method's buffers and teachers to ``device`` if they are elsewhere (one check per step).

        Host-resident banks (``bank_device="cpu"``, per-token banks) stay where they are, so the check
        reads the first buffer of the rest."""
        first = next((b for m in self.modules() if not getattr(m, "cpu_resident", False)
                      for b in m.buffers(recurse=False)), None)
        if first is not None and first.device != device:
            self.to(device)

    # ------------------------------------------------------------------ helpers
    def _require_epoch(self, what: str) -> int:
        if self.epoch is None:
            raise RuntimeError(f"{what} called outside an epoch; call start_epoch(epoch) first")
        return self.epoch

    def _check_batch(self, logits: torch.Tensor, targets: torch.Tensor,
                     indices: torch.Tensor | None) -> torch.Tensor | None:
        """Validate a batch (when ``self.validate``: shapes, ranges, repeats, finite logits), bring the
        method's state to the logits' device, and return the indices as int64 on that device."""
        if self.validate:   # one host synchronisation for every check
            indices = check_batch(logits, targets, indices, num_samples=self.num_samples, num_classes=self.num_classes)
        self._follow_device(logits.device)
        return None if indices is None else indices.to(device=logits.device, dtype=torch.long)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hparams().items())
        return f"{type(self).__name__}({args})"

