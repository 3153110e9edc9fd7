"""Any registered method (LSTSD, the baselines) inside the Hugging Face ``transformers.Trainer``.

Install with ``pip install -e '.[transformers]'`` in a clone (``transformers`` and ``accelerate``).
:class:`LSTSDTrainer` is a ``Trainer`` whose loss is the method's, for sequence-classification
models (anything whose output has ``logits`` of shape ``B × C``)::

    train_set = add_index_column(train_set)            # each row's index, "idx", 0 … N − 1
    trainer = LSTSDTrainer(model=model, args=TrainingArguments("out", num_train_epochs=6),
                           train_dataset=train_set, eval_dataset=test_set,
                           method="lstsd", method_settings={"generation_epochs": 2, "temperature": 1.0})
    trainer.train()                                    # or train(resume_from_checkpoint=True)

What it takes care of:

* **The index column** (``index_column="idx"``) is kept by the Trainer's column removal
  (``remove_unused_columns`` stays on: the column is added to the columns the Trainer keeps) and
  is popped from the batch before ``model(**inputs)``, in training and in evaluation. A training
  set without it is refused at construction, naming :func:`add_index_column`.
* **No bank writes outside training.** The Trainer's evaluation and prediction also call
  ``compute_loss``; there (the model in eval mode) the loss is plain cross-entropy and the method
  is not called.
* **The loss is scaled once under gradient accumulation.** For a classifier the method's loss is
  a per-batch mean that ignores ``num_items_in_batch``; the Trainer is told so
  (``model_accepts_loss_kwargs = False``, ``loss_is_scaled_for_ga = False``), so ``training_step``
  divides it by the accumulation steps exactly once, whatever the model's ``forward`` accepts. For
  a causal LM the loss is the sum over the batch's supervised tokens divided by the tokens of the
  whole accumulated batch (``num_items_in_batch``), as the model's own loss is, and is not divided
  again.
* **Causal language models** get per-token targets (:mod:`lstsd.tokens`): the vocabulary size is
  read from the model's output layer (not ``config.num_labels``), and a method that cannot take
  per-token logits is refused when the trainer is built.
* **Logging.** Beside the training loss, the mean of the method's loss parts since the last log
  (``lstsd/ce``, ``lstsd/long``, ``lstsd/short``, ...).
* **Checkpoints.** The Trainer saves callback state as JSON, which cannot hold banks: the
  method's full state (and the epoch open at that step) goes to ``lstsd_method.pt`` in each
  ``checkpoint-N`` folder, and ``train(resume_from_checkpoint=...)`` restores it. The Trainer
  resumes mid-epoch exactly (it skips the batches already seen), so a resumed run continues with
  the same banks and the same losses as an uninterrupted one.
* **torch.distributed** (``torchrun``, ``accelerate launch``): the method lives in the Trainer,
  not in the DDP-wrapped model, and each ``loss()`` exchanges the step's rows between ranks in one
  collective (:mod:`lstsd.distributed`), so every rank keeps the same banks; the Trainer's
  distributed sampler gives every rank the same number of steps.
* **Teachers and schedules.** Mean Teacher, Snapshot Distillation and LSTSD (single) run a copy
  of the model on the batch's inputs (refused under FSDP/DeepSpeed, which shard it); the snapshot
  methods' cyclic LR schedule replaces ``lr_scheduler_type`` (and, with a warning, a scheduler
  passed in ``optimizers=``). Evaluation reports the model itself; the snapshot
  ensemble's or the EMA teacher's probabilities are ``trainer.eval_predictions(inputs)``.

Example (a tiny randomly initialised BERT; a few seconds):
    >>> import torch
    >>> from transformers import BertConfig, BertForSequenceClassification, TrainingArguments
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> config = BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
    ...                     intermediate_size=16, max_position_embeddings=16, num_labels=2)
    >>> rows = [{"input_ids": torch.randint(0, 30, (6,)), "labels": i % 2} for i in range(16)]
    >>> args = TrainingArguments("/tmp/lstsd-doctest-hf", num_train_epochs=2, per_device_train_batch_size=8,
    ...                          save_strategy="no", report_to=[], disable_tqdm=True, logging_strategy="no",
    ...                          use_cpu=True)
    >>> trainer = LSTSDTrainer(model=BertForSequenceClassification(config), args=args,
    ...                        train_dataset=add_index_column(rows),
    ...                        method="lstsd", method_settings={"generation_epochs": 1})
    >>> _ = trainer.train()  # doctest: +ELLIPSIS
    {...'train_loss': ...}
    >>> trainer.method.next_epoch, bool(trainer.method.short_term_bank.recorded.all())
    (2, True)
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ..losses import cross_entropy
from ..methods import Method, method_class
from ..tokens import causal_lm_cross_entropy
from ._common import MethodDriver, build_method, import_framework, steps_per_epoch

_hf = import_framework("transformers", extra="transformers")
import_framework("accelerate", extra="transformers")   # the Trainer's own requirement, named with our extra

__all__ = ["METHOD_STATE_NAME", "IndexedRows", "LSTSDTrainer", "LogitsOf", "add_index_column"]

# Base classes from the framework imported at run time.
_TrainerCallback: Any = _hf.TrainerCallback
_Trainer: Any = _hf.Trainer

METHOD_STATE_NAME = "lstsd_method.pt"   # beside the Trainer's files in each checkpoint-N folder
_CHECKPOINT_PREFIX = getattr(getattr(_hf, "trainer_utils", None), "PREFIX_CHECKPOINT_DIR", "checkpoint")


class IndexedRows(Dataset):
    """A map-style data set of dict rows that adds each row's position under ``column``.

    Example:
        >>> IndexedRows([{"x": 1}, {"x": 2}])[1]
        {'x': 2, 'idx': 1}
    """

    def __init__(self, dataset: Any, column: str = "idx") -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(f"add_index_column needs a map-style data set (with __getitem__ and __len__), got "
                            f"{type(dataset).__name__}; an iterable data set has no stable sample index")
        self.dataset, self.column = dataset, column

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.dataset[i]
        if not isinstance(row, Mapping):
            raise TypeError(f"add_index_column: rows must be dicts of features (the Trainer's format), got "
                            f"{type(row).__name__}")
        return {**row, self.column: i}


def add_index_column(dataset: Any, column: str = "idx") -> Any:
    """``dataset`` with each row's position (``0 … len − 1``) in ``column``.

    A ``datasets.Dataset`` gets the column itself (replacing one of that name, e.g. after
    ``select`` or ``filter`` left GLUE's ``idx`` with gaps); any other map-style data set of dict
    rows is wrapped in :class:`IndexedRows`. Do it after subsetting, before training.
    """
    names = getattr(dataset, "column_names", None)
    if isinstance(names, list) and hasattr(dataset, "add_column"):   # a datasets.Dataset
        if column in names:
            dataset = dataset.remove_columns(column)
        return dataset.add_column(column, list(range(len(dataset))))
    return IndexedRows(dataset, column)


class LogitsOf(nn.Module):
    """``forward(inputs) = model(**inputs).logits``: a Hugging Face classifier as the network that the
    teacher-forward methods copy and run (their ``inputs`` is the batch's feature dict)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        return _logits(self.model(**inputs))


def _logits(outputs: Any) -> torch.Tensor:
    if isinstance(outputs, Mapping):
        if "logits" not in outputs:
            raise ValueError(f"LSTSDTrainer needs a classifier whose output has 'logits'; the model returned "
                             f"{sorted(outputs)} (use an AutoModelForSequenceClassification-style model)")
        return outputs["logits"]
    if isinstance(outputs, torch.Tensor):
        return outputs
    return outputs[0]


class _MethodHooks(_TrainerCallback):
    """Calls the method's epoch and step hooks at the Trainer's events (first among the callbacks)."""

    def __init__(self, trainer: LSTSDTrainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer._begin_training(state)

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # state.epoch is e + (steps done)/(steps in epoch): e itself at an epoch's start, also on resume.
        self.trainer._driver.begin(int(math.floor((state.epoch or 0.0) + 1e-9)), self.trainer.network)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.trainer.method.end_step(self.trainer.network)     # after each optimizer step (Mean Teacher's EMA)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        teachers = self.trainer._driver.end(self.trainer.network)   # before the Trainer's end-of-epoch save
        if teachers:    # summed over the ranks already; the Trainer reports from the main process
            self.trainer.log({f"teacher/{k}": float(v) for k, v in teachers.items()})


def is_causal_lm(model: nn.Module) -> bool:
    """Whether ``model`` is a causal language model (an ``…ForCausalLM``, PEFT's wrapper of one included)."""
    return type(model).__name__.endswith("ForCausalLM")


def vocabulary_size(model: nn.Module) -> int | None:
    """The width of a language model's output layer (the vocabulary its logits cover), else ``None``."""
    get = getattr(model, "get_output_embeddings", None)
    layer = get() if callable(get) else None
    weight = getattr(layer, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() == 2:
        return int(weight.shape[0])
    size = getattr(getattr(model, "config", None), "vocab_size", None)
    return int(size) if size else None


class LSTSDTrainer(_Trainer):
    """A ``transformers.Trainer`` that trains with a registered method's loss.

    Args:
        *args, **kwargs: the ``Trainer``'s own (``model``, ``args``, ``train_dataset``, …).
        method: a registered method name (see :func:`lstsd.available_methods`) or a built
            :class:`lstsd.Method`.
        method_settings: the method's settings (``{"generation_epochs": 2, "temperature": 1.0}``).
        num_samples: training-set size; default ``len(train_dataset)``.
        num_classes: class count; default ``model.config.num_labels``, or for a causal LM the width of
            its output layer (the vocabulary).
        index_column: the column holding each training row's index (:func:`add_index_column`).

    **Causal language models** (``AutoModelForCausalLM``, also wrapped by PEFT): the method works per
    token (``per_token=True`` is set for a method given by name: ``lstsd``, its ablations, ``ps_kd``,
    ``temporal_ensembling``;
    ``vanilla`` and ``label_smoothing`` take sequences as they are), on the supervised tokens of each
    example (labels not -100, after the causal shift). The loss is normalised as the model's own:
    over the tokens of the whole accumulated batch (``num_items_in_batch``), so under gradient
    accumulation it equals the model's loss exactly; evaluation reports the model's own loss.

    The method is ``trainer.method``; its state is saved as ``lstsd_method.pt`` in every
    checkpoint folder and restored by ``train(resume_from_checkpoint=...)``. At the end of each
    epoch the teachers' diagnostics (:mod:`lstsd.diagnostics`) are logged as ``teacher/short_quality``,
    ``teacher/short_kl``, … (``trainer.state.log_history`` and the report_to integrations).
    """

    # A classifier's loss is a per-batch mean that ignores num_items_in_batch: training_step must
    # divide it by the accumulation steps (transformers >= 5 reads this; older versions read
    # model_accepts_loss_kwargs, set to False in __init__). A causal LM's is normalised already.
    loss_is_scaled_for_ga = False
    lr_scheduler: Any   # the Trainer's; create_scheduler sets the method's own

    def __init__(self, *args: Any, method: str | Method = "lstsd", method_settings: dict[str, Any] | None = None,
                 num_samples: int | None = None, num_classes: int | None = None, index_column: str = "idx",
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.model_accepts_loss_kwargs = False    # num_items_in_batch is neither counted nor passed to the model
        if self.compute_loss_func is not None:
            raise ValueError("LSTSDTrainer computes the loss with the method; do not pass compute_loss_func")
        if getattr(self.args, "label_smoothing_factor", 0.0):
            raise ValueError("LSTSDTrainer: label_smoothing_factor would replace the method's loss; set it to 0 and "
                             "use method='label_smoothing' (method_settings={'smoothing': ...}) instead")
        self.index_column = index_column
        if num_samples is None and self.train_dataset is not None and hasattr(self.train_dataset, "__len__"):
            num_samples = len(self.train_dataset)
        self.causal_lm = is_causal_lm(self.model)
        settings = dict(method_settings or {})
        if self.causal_lm:
            num_classes = vocabulary_size(self.model) if num_classes is None else num_classes
            if isinstance(method, str) and method_class(method).takes_per_token:
                settings.setdefault("per_token", True)
        elif num_classes is None:
            num_classes = getattr(getattr(self.model, "config", None), "num_labels", None)
        self.method = build_method(method, num_samples=num_samples, num_classes=num_classes,
                                   settings=settings or None, where="LSTSDTrainer")
        if (not self.method.accepts_sequences) if self.causal_lm else getattr(self.method, "per_token", False):
            raise ValueError(
                f"LSTSDTrainer: method {self.method.name!r} cannot take a causal LM's per-token logits; use lstsd, "
                "lstsd_wo_long, lstsd_wo_short, ps_kd, temporal_ensembling, label_smoothing or vanilla"
                if self.causal_lm else
                f"LSTSDTrainer: method {self.method.name!r} was built for a causal LM's per-token logits "
                f"(per_token=True) but {type(self.model).__name__} is not a causal LM")
        if self.causal_lm:
            # The loss is normalised by the tokens of the whole accumulated batch, as the model's own
            # loss is: the Trainer counts them (model_accepts_loss_kwargs) and divides by nothing more.
            self.model_accepts_loss_kwargs = True
            self.loss_is_scaled_for_ga = True
        self._components: dict[str, torch.Tensor] = {}     # sums of the loss's parts since the last log
        self._component_steps = 0
        self._driver = MethodDriver(
            self.method, where="LSTSDTrainer",
            fix="pass train(resume_from_checkpoint=...) with a checkpoint of an LSTSDTrainer run to continue it, or "
                "build a new LSTSDTrainer for a new run",
            index_fix=f"the batch has no {index_column!r}; add it with lstsd.integrations.transformers."
                      f"add_index_column(train_dataset, {index_column!r})",
            inputs_fix="the batch's features are passed as inputs")
        self._driver.refuse_sharded("DeepSpeed" if self.is_deepspeed_enabled else
                                    "FSDP" if self.is_fsdp_enabled else None)
        self._check_index_column(self.train_dataset)
        self._train_batches: int | None = None
        self._network: LogitsOf | None = None
        self.callback_handler.callbacks.insert(0, _MethodHooks(self))

    # ------------------------------------------------------------------ data
    def _check_index_column(self, dataset: Any) -> None:
        if dataset is None or not self.method.needs_indices:
            return
        col = self.index_column
        fix = f"add it with lstsd.integrations.transformers.add_index_column(train_dataset, {col!r})"
        names = getattr(dataset, "column_names", None)
        if isinstance(names, list):                                   # a datasets.Dataset
            if col not in names:
                raise ValueError(f"LSTSDTrainer: the training set has no {col!r} column (each row's index, which "
                                 f"method {self.method.name!r} needs for its per-sample soft targets); {fix}")
            if sorted(int(v) for v in dataset[col]) != list(range(len(dataset))):
                raise ValueError(f"LSTSDTrainer: the {col!r} column is not 0 … {len(dataset) - 1} once each (rows "
                                 f"selected or filtered after it was made?); renumber: {fix}")
        elif hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__") and len(dataset) > 0:
            first = dataset[0]
            if isinstance(first, Mapping) and col not in first:
                raise ValueError(f"LSTSDTrainer: the training set's rows have no {col!r} key (each row's index, which "
                                 f"method {self.method.name!r} needs for its per-sample soft targets); {fix}")
        self._driver.check_dataset_size(len(dataset) if hasattr(dataset, "__len__") else None)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self.index_column not in self._signature_columns:   # survives remove_unused_columns
            self._signature_columns.append(self.index_column)

    def get_train_dataloader(self) -> Any:
        loader = super().get_train_dataloader()
        self._train_batches = len(loader) if hasattr(loader, "__len__") else None   # per process
        return loader

    # ------------------------------------------------------------------ method lifecycle
    @property
    def network(self) -> LogitsOf:
        """The model as a ``forward(inputs) → logits`` network (what teachers copy and run)."""
        if self._network is None or self._network.model is not self.model:
            self._network = LogitsOf(self.model)
        return self._network

    def _run_length(self, state: Any) -> tuple[int | None, int | None]:
        steps = (steps_per_epoch(self._train_batches, self.args.gradient_accumulation_steps)
                 if self._train_batches else None)
        epochs = getattr(state, "num_train_epochs", None)
        if steps and getattr(state, "max_steps", 0) > 0:
            epochs = math.ceil(state.max_steps / steps)
        return (int(epochs) if epochs else None), steps

    def _begin_training(self, state: Any) -> None:
        epochs, _ = self._run_length(state)
        self._driver.set_up(self.network, epochs=epochs, batches=self._train_batches,
                            accumulation=self.args.gradient_accumulation_steps, device=self.args.device)

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None) -> Any:
        if not self.method.schedules_lr:
            return super().create_scheduler(num_training_steps, optimizer)
        given = self.lr_scheduler is not None and not getattr(self, "_created_lr_scheduler", False)
        batches, accumulation = self._train_batches, self.args.gradient_accumulation_steps
        epochs = math.ceil(num_training_steps / steps_per_epoch(batches, accumulation)) if batches else 0
        self.lr_scheduler = self._driver.lr_schedule(
            optimizer if optimizer is not None else self.optimizer, epochs=epochs, batches=batches,
            accumulation=accumulation, replaces="the scheduler passed in optimizers=(optimizer, scheduler)" if given
            else None)
        self._created_lr_scheduler = True
        return self.lr_scheduler

    # ------------------------------------------------------------------ loss
    def _label_key(self) -> str:
        return self.label_names[0] if len(self.label_names) == 1 else "labels"

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """The method's loss in training; cross-entropy (no bank writes) in evaluation and prediction.

        ``num_items_in_batch`` is ignored: the loss is a per-batch mean, which the Trainer divides
        by the accumulation steps (class docstring).
        """
        inputs = dict(inputs)
        indices = inputs.pop(self.index_column, None)       # never passed to the model
        labels = inputs.pop(self._label_key(), None)         # the model computes no loss of its own
        if labels is None:
            raise ValueError(f"LSTSDTrainer: the batch has no {self._label_key()!r}; the training and evaluation "
                             "sets need the class labels (a 'label' or 'labels' column)")
        outputs = model(**inputs)
        logits = _logits(outputs)
        items = num_items_in_batch if self.causal_lm else None
        if model.training:
            self._driver.check_loss_call(indices, inputs)
            loss = self.method.loss(logits, labels, indices, model=self.network, inputs=inputs,
                                    num_items_in_batch=items)
            self._add_components()
        elif self.causal_lm:
            loss = causal_lm_cross_entropy(logits, labels, items)
        else:
            loss = cross_entropy(logits, labels)
        if items is not None and self.args.average_tokens_across_devices and self.args.world_size > 1:
            loss = loss * self.args.world_size   # the token count is summed over the processes, as the Trainer does
        return (loss, outputs) if return_outputs else loss

    def _add_components(self) -> None:
        with torch.no_grad():
            for name, value in self.method.loss_components().items():   # stays on the device: no sync
                self._components[name] = self._components.get(name, 0.0) + value
        self._component_steps += 1

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """The Trainer's log, with the mean of the method's loss parts since the last log
        (``lstsd/ce``, ``lstsd/long``, ``lstsd/short``, ...) beside the training loss."""
        if "loss" in logs and self._component_steps:
            logs = {**logs, **{f"lstsd/{k}": round(float(v) / self._component_steps, 6)
                               for k, v in self._components.items()}}
            self._components, self._component_steps = {}, 0
        super().log(logs, *args, **kwargs)

    def prediction_step(self, model: nn.Module, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None) -> Any:
        inputs = {k: v for k, v in inputs.items() if k != self.index_column}
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    @torch.no_grad()
    def eval_predictions(self, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The method's predictors on a batch of model inputs: ``{"model": probs, ...}`` (Snapshot
        Ensembles add ``"ensemble"``, Mean Teacher ``"teacher"``). Writes nothing."""
        inputs = {k: v for k, v in inputs.items() if k not in (self.index_column, self._label_key(), "label")}
        was_training = self.model.training
        self.model.eval()
        try:
            return self.method.eval_predictions(self.network, self._prepare_inputs(inputs))
        finally:
            self.model.train(was_training)

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, model: nn.Module, trial: Any, *args: Any, **kwargs: Any) -> None:
        if self.args.should_save:   # every rank holds the same banks: the main process writes them
            folder = os.path.join(self._get_output_dir(trial=trial), f"{_CHECKPOINT_PREFIX}-{self.state.global_step}")
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, METHOD_STATE_NAME)
            torch.save(self._driver.state_dict(), path + ".tmp")
            os.replace(path + ".tmp", path)
        super()._save_checkpoint(model, trial, *args, **kwargs)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        path = os.path.join(resume_from_checkpoint, METHOD_STATE_NAME)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{resume_from_checkpoint} has no {METHOD_STATE_NAME}: it was not written by an "
                                    "LSTSDTrainer, so the method's soft targets cannot be restored; resume from a "
                                    "checkpoint of an LSTSDTrainer run, or start a new run")
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        self._driver.stash(torch.load(path, map_location="cpu", weights_only=True))
