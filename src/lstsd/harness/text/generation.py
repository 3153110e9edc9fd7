"""The text-generation task: a causal LM fine-tuned on instruction examples, evaluated per answer token.

Data set ``wordnet_definitions`` (:func:`lstsd.harness.text.wordnet.load_wordnet_definitions`):
"Define the word 'X' (noun)." → its WordNet 3.0 gloss, in the model's chat template
(:func:`lstsd.integrations.llm.chat_example`), the loss on the answer's tokens only. ``data_args``:

* ``train_size`` (default 2000), ``heldout_size`` (default 1000): examples drawn, split by lemma;
* ``max_words`` (default 24): the longest definition kept, in words;
* ``seed`` (default 0): the seed of the lemma split and of the draw. It is the data's own seed, not
  the run's: every run of a comparison trains and is tested on the same examples;
* ``probe_size`` (default 200; 0 = no probe), ``probe_subset`` (default ``nyt``): the forgetting
  probe, fixed general-text sentences from a VADER set (:func:`lstsd.harness.text.vader.probe_sentences`;
  ``lstsd data fetch vader`` caches them; ``--data-dir`` / ``$LSTSD_DATA`` is where they are looked
  up when named).

WordNet itself comes from ``$LSTSD_WORDNET`` or Debian's ``wordnet-base`` (``/usr/share/wordnet``).

Models: the causal LMs of :mod:`lstsd.harness.text.lm` (``smollm2-135m``, ``tiny-llama``; LoRA with
``model_args: {lora_r: 8}``). The methods' ``num_classes`` is the model's vocabulary (its output
layer's width); the methods with a per-token form are built with ``per_token=True``
(:func:`create_sequence_method`), ``vanilla`` and ``label_smoothing`` take sequences as they are, and
every other method is refused in one line before anything is loaded.

Metrics, per epoch in ``metrics.jsonl``: ``test_loss`` (the headline: held-out loss per answer
token, lower is better), ``test_perplexity`` (its exp), ``test_token_accuracy`` (%), ``probe_loss``
and ``probe_perplexity`` (the probe's loss per token); ``results.json`` adds ``before_training``,
the same evaluation of the model before its first step. ``train_accuracy`` is the per-token
accuracy on the training answers.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import nn

from ...methods import Method, create_method, method_class
from ..config import TrainConfig
from ..data.splits import data_source
from ..errors import ConfigError
from ..registry import available_datasets, available_models, dataset_entry, model_kind
from ..task import Task
from .lm import build_causal_lm, pad_token_id
from .sequences import SequenceSplit, SequenceSplits, perplexity, sequence_loss
from .vader import probe_sentences
from .wordnet import Definition, DefinitionSet, chat_definitions

__all__ = ["GENERATION_METRICS", "SEQUENCE_METHODS", "build_generation_task", "create_sequence_method"]

GENERATION_METRICS = ("loss", "perplexity", "token_accuracy")
SEQUENCE_METHODS = "lstsd, lstsd_wo_long, lstsd_wo_short, ps_kd, temporal_ensembling, label_smoothing or vanilla"


def create_sequence_method(name: str, *, num_samples: int, num_classes: int, **settings: Any) -> Method:
    """Method ``name`` for a causal LM's per-token logits: ``per_token=True`` where the method has that
    setting; :class:`~lstsd.harness.errors.ConfigError` (a ``ValueError``) in one line for a method that
    cannot take sequences."""
    extra = {"per_token": True} if method_class(name).takes_per_token else {}
    method = create_method(name, num_samples=num_samples, num_classes=num_classes, **extra, **settings)
    if not method.accepts_sequences:
        raise ConfigError(f"method {name!r} has no per-token form, so it cannot train a causal LM",
                          f"choose one of {SEQUENCE_METHODS} (train: --set method=NAME; compare: --methods)")
    return method


def _probe_source(subset: str, path: os.PathLike, sentences: list[str], data_dir: str | None) -> dict[str, Any]:
    origin = "--data-dir" if data_dir else "$LSTSD_DATA" if os.environ.get("LSTSD_DATA") else "cache"
    text = "\n".join(sentences).encode("utf-8")
    return data_source(f"vader_{subset}", origin, os.path.dirname(os.fspath(path)),
                       [np.frombuffer(text, dtype=np.uint8)], files=[path])


def build_generation_task(cfg: TrainConfig) -> Task:
    """Load ``cfg.dataset`` (a text-generation data set), build ``cfg.model`` (a causal LM) and encode
    the examples with its tokeniser and chat template."""
    entry = dataset_entry(cfg.dataset)
    if entry.kind != "text_generation":
        raise ValueError(f"{cfg.dataset!r} is not a text-generation data set; those are: "
                         f"{', '.join(available_datasets('text_generation'))}")
    if model_kind(cfg.model) != "causal_lm":
        raise ValueError(f"model {cfg.model!r} is not a causal LM; the text-generation data set {cfg.dataset!r} "
                         f"needs one of: {', '.join(available_models('causal_lm'))}")
    if cfg.train_subset is not None or cfg.val_fraction:
        raise ValueError(f"{cfg.dataset} takes its sizes from data_args (train_size, heldout_size), not "
                         "train_subset or val_fraction: drop those and set data_args.train_size")
    args = dict(cfg.data_args)
    probe_size = int(args.pop("probe_size", 200))
    probe_subset = str(args.pop("probe_subset", "nyt"))
    definitions: DefinitionSet = entry.load(**args)
    model, tokenizer = build_causal_lm(cfg.model, **cfg.model_args)
    def encode(rows: list[Definition]) -> SequenceSplit:
        return SequenceSplit.of(chat_definitions(tokenizer, rows))
    source = dict(definitions.source)
    probe = None
    if probe_size:
        sentences, path = probe_sentences(probe_size, subset=probe_subset, data_dir=cfg.data_dir)
        encoded = [[int(i) for i in tokenizer(s)["input_ids"]] for s in sentences]
        probe = SequenceSplit.of([{"input_ids": ids, "labels": ids} for ids in encoded])
        source["probe"] = _probe_source(probe_subset, path, sentences, cfg.data_dir)
    data = SequenceSplits(name=cfg.dataset, train=encode(definitions.train), test=encode(definitions.heldout),
                          num_classes=model.vocab_size, pad_id=pad_token_id(tokenizer), probe=probe, source=source)

    def evaluate(network: nn.Module, device: torch.device, precision: str, batch_size: int) -> dict[str, float]:
        row: dict[str, float] = {}
        for prefix, split in (("test", data.test), ("probe", data.probe)):
            if split is None:
                continue
            loss, accuracy = sequence_loss(network, split, pad_id=data.pad_id, device=device, precision=precision,
                                           batch_size=batch_size)
            row.update({f"{prefix}_loss": loss, f"{prefix}_perplexity": perplexity(loss)})
            if prefix == "test":
                row["test_token_accuracy"] = accuracy
        return row

    return Task(data=data, model=model, metrics=GENERATION_METRICS, evaluate=evaluate)
