"""Token sequences for the text-generation task: the splits, a loader that pads per batch, the evaluation.

An example is ``input_ids`` and ``labels`` of one length (labels -100 where there is no loss: the
prompt); a batch is ``({"input_ids", "attention_mask"}, labels, idx)``, right-padded to its longest
example (padding: the pad id, mask 0, label -100), which is what a causal LM and the methods'
per-token losses take. Losses count the supervised tokens after the causal shift (position t
predicts token t + 1), as Hugging Face's causal-LM loss and :mod:`lstsd.tokens` do.

Example:
    >>> split = SequenceSplit.of([{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
    ...                           {"input_ids": [8, 9], "labels": [-100, 9]}])
    >>> loader = SequenceLoader(split, 2, pad_id=0, shuffle=False)
    >>> x, labels, idx = next(iter(loader))
    >>> x["input_ids"].tolist(), x["attention_mask"].tolist(), labels.tolist(), split.supervised_tokens()
    ([[5, 6, 7], [8, 9, 0]], [[1, 1, 1], [1, 1, 0]], [[-100, 6, 7], [-100, 9, -100]], 3)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ...tokens import causal_lm_cross_entropy
from ..data.loader import _PERMUTATION_STREAM, epoch_seed
from ..runtime import autocast

__all__ = ["SequenceLoader", "SequenceSplit", "SequenceSplits", "perplexity", "sequence_loss", "token_hits"]


@dataclass
class SequenceSplit:
    """Examples of varying length: ``input_ids[i]`` and ``labels[i]`` (1-D int64, the same length)."""

    input_ids: list[torch.Tensor]
    labels: list[torch.Tensor]

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise ValueError(f"SequenceSplit has {len(self.input_ids)} inputs but {len(self.labels)} label rows")
        for i, (ids, labels) in enumerate(zip(self.input_ids, self.labels)):
            if ids.ndim != 1 or ids.shape != labels.shape or len(ids) < 2:
                raise ValueError(f"example {i}: input_ids and labels must be 1-D of one length >= 2, got "
                                 f"{tuple(ids.shape)} and {tuple(labels.shape)}")

    @classmethod
    def of(cls, examples: list[dict[str, list[int]]]) -> SequenceSplit:
        """From ``{"input_ids": [...], "labels": [...]}`` dicts (:func:`~lstsd.integrations.llm.chat_example`'s)."""
        return cls([torch.tensor(e["input_ids"], dtype=torch.int64) for e in examples],
                   [torch.tensor(e["labels"], dtype=torch.int64) for e in examples])

    def __len__(self) -> int:
        return len(self.input_ids)

    def supervised_tokens(self) -> int:
        """Tokens with a loss after the causal shift (labels[1:] not -100), over every example."""
        return sum(int((labels[1:] != -100).sum()) for labels in self.labels)

    def batch(self, index: list[int], pad_id: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Examples ``index``, right-padded to the longest of them."""
        width = max(len(self.input_ids[i]) for i in index)
        ids = torch.full((len(index), width), pad_id, dtype=torch.int64)
        labels = torch.full((len(index), width), -100, dtype=torch.int64)
        mask = torch.zeros((len(index), width), dtype=torch.int64)
        for row, i in enumerate(index):
            n = len(self.input_ids[i])
            ids[row, :n] = self.input_ids[i]
            labels[row, :n] = self.labels[i]
            mask[row, :n] = 1
        return {"input_ids": ids, "attention_mask": mask}, labels


@dataclass
class SequenceSplits:
    """The text-generation task's data: training and held-out (``test``) examples, the forgetting
    probe's sentences, the vocabulary size (the methods' ``num_classes``), the padding id and where
    the data came from (``source``, as :attr:`lstsd.harness.data.DatasetSplits.source`)."""

    name: str
    train: SequenceSplit
    test: SequenceSplit
    num_classes: int
    pad_id: int
    probe: SequenceSplit | None = None
    val: SequenceSplit | None = None
    source: dict[str, Any] = field(default_factory=dict)


class SequenceLoader:
    """Batches ``({"input_ids", "attention_mask"}, labels, idx)`` of a :class:`SequenceSplit`, padded per
    batch; the order of an epoch is :class:`~lstsd.harness.data.IndexedTensorLoader`'s (the same seeded
    permutation per ``(seed, epoch)``, the same share of each global batch per process under DDP)."""

    def __init__(self, split: SequenceSplit, batch_size: int, *, pad_id: int, shuffle: bool = True,
                 drop_last: bool = False, seed: int = 0, device: torch.device | str = "cpu", rank: int = 0,
                 world_size: int = 1) -> None:
        if len(split) == 0:
            raise ValueError("cannot build a loader over an empty split")
        if batch_size < 1 or batch_size % world_size:
            raise ValueError(f"batch_size={batch_size} must be >= 1 and a multiple of the {world_size} process(es)")
        self.split, self.batch_size, self.pad_id = split, batch_size, pad_id
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.device = torch.device(device)
        self.rank, self.world_size = rank, world_size
        self._epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose permutation the next iteration uses."""
        self._epoch = epoch

    @property
    def _padded_samples(self) -> int:
        return -(-len(self.split) // self.world_size) * self.world_size

    def __len__(self) -> int:
        if self.drop_last:
            return self._padded_samples // self.batch_size
        return -(-self._padded_samples // self.batch_size)

    def _order(self) -> torch.Tensor:
        n = len(self.split)
        if not self.shuffle:
            order = torch.arange(n)
        else:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(
                epoch_seed(self.seed, self._epoch, _PERMUTATION_STREAM)))
        if self._padded_samples > n:
            order = torch.cat([order, order[:self._padded_samples - n]])
        return order

    def __iter__(self) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]]:
        order = self._order()
        stop = len(self) * self.batch_size if self.drop_last else self._padded_samples
        for start in range(0, stop, self.batch_size):
            index = order[start:start + self.batch_size]
            if self.world_size > 1:
                part = index.numel() // self.world_size
                index = index[self.rank * part:(self.rank + 1) * part]
            x, labels = self.split.batch(index.tolist(), self.pad_id)
            yield ({k: v.to(self.device) for k, v in x.items()}, labels.to(self.device), index.to(self.device))


def token_hits(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(correct, counted)``: supervised tokens whose argmax is the label, and supervised tokens (on the device)."""
    target = labels[:, 1:]
    mask = target != -100
    correct = ((logits[:, :-1].detach().argmax(-1) == target) & mask).sum()
    return correct, mask.sum()


@torch.no_grad()
def sequence_loss(model: nn.Module, split: SequenceSplit, *, pad_id: int, device: torch.device, precision: str,
                  batch_size: int) -> tuple[float, float]:
    """``(loss, token accuracy %)`` of ``model`` on ``split``: the mean cross-entropy per supervised
    token (summed over every batch, divided by every supervised token: not a mean of batch means)."""
    was_training = model.training
    model.eval()
    total = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    tokens = 0
    loader = SequenceLoader(split, batch_size, pad_id=pad_id, shuffle=False, device=device)
    for x, labels, _ in loader:
        with autocast(device, precision):
            logits = model(x)
        total += causal_lm_cross_entropy(logits, labels, num_items_in_batch=1).double()   # the sum over tokens
        hits, counted = token_hits(logits, labels)
        correct += hits
        tokens += int(counted)
    model.train(was_training)
    if tokens == 0:
        raise ValueError("the split has no supervised token: nothing to evaluate")
    return float(total) / tokens, 100.0 * float(correct) / tokens


def perplexity(loss: float) -> float:
    """``exp(loss)``: the perplexity of a mean per-token loss (inf past float range)."""
    return math.exp(loss) if loss < 700 else math.inf
