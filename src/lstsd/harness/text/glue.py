"""GLUE RTE, MRPC, SST-2 and CoLA (Wang et al., 2019), the text tasks of the paper's Table 2.

Read from a local folder in the layout of the official GLUE download script
(``download_glue_data.py``), one subfolder per task holding ``train.tsv`` and ``dev.tsv``::

    <data_dir>/RTE/train.tsv    index  sentence1  sentence2  label   (header; label strings)
    <data_dir>/MRPC/train.tsv   Quality  #1 ID  #2 ID  #1 String  #2 String   (header)
    <data_dir>/SST-2/train.tsv  sentence  label   (header)
    <data_dir>/CoLA/train.tsv   source  label  original_label_marker  sentence   (NO header)

GLUE hides its test labels, so the **dev set is our test split** (as in the paper and
common practice). Files are read as UTF-8 (a BOM, as in MRPC's original files, is skipped)
with ``csv`` in tab-separated mode and ``quoting=csv.QUOTE_NONE``: quote characters inside
sentences (frequent in MRPC and RTE) are ordinary text. Every row must have exactly as
many fields as the header (4 for CoLA), else a ``ValueError`` names the file and line.

Labels (the GLUE / Hugging Face ``datasets`` conventions): RTE ``entailment`` = 0,
``not_entailment`` = 1; MRPC 1 = paraphrase; SST-2 1 = positive; CoLA 1 = acceptable.
Metrics: RTE and SST-2 accuracy, MRPC accuracy and F1 (of class 1), CoLA Matthews
correlation. RTE and MRPC stay sentence pairs all the way into the tokeniser.

The folder is looked up in ``data_dir`` (the GLUE root or the task folder itself),
``$GLUE_DIR`` (the BERT repository's convention), ``$LSTSD_DATA/glue`` and
``$LSTSD_CACHE/glue`` (``~/.cache/lstsd/glue``). With ``source="hf"`` (or ``"auto"`` when no
folder is found) the tasks come from ``datasets.load_dataset("glue", task)`` instead, when
the ``datasets`` package is installed and the hub is reachable.

Example (skipped: needs the GLUE files in ``~/glue_data``):
    >>> ts = load_glue("rte", data_dir="~/glue_data")     # doctest: +SKIP
    >>> ts.is_pair, ts.metrics, len(ts.train_texts)       # doctest: +SKIP
    (True, ('accuracy',), 2490)
"""

from __future__ import annotations

import csv
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data.splits import cache_root
from ..errors import DataNotFoundError
from .tokenize import TextSplits

__all__ = ["GLUE_TASKS", "available_glue_tasks", "load_glue", "read_glue_tsv"]


@dataclass(frozen=True)
class _GlueTask:
    name: str  # canonical key
    folder: str  # folder of the GLUE download layout
    hf_config: str
    header: bool
    text_a: str | int  # column name (header files) or index (headerless)
    text_b: str | int | None
    label: str | int
    label_map: dict[str, int]
    metrics: tuple[str, ...]
    classes: tuple[str, ...]
    n_columns: int | None = None  # headerless files only
    hf_text_a: str = "sentence"
    hf_text_b: str | None = None


GLUE_TASKS: dict[str, _GlueTask] = {
    "rte": _GlueTask("rte", "RTE", "rte", True, "sentence1", "sentence2", "label",
                     {"entailment": 0, "not_entailment": 1}, ("accuracy",), ("entailment", "not_entailment"),
                     hf_text_a="sentence1", hf_text_b="sentence2"),
    "mrpc": _GlueTask("mrpc", "MRPC", "mrpc", True, "#1 String", "#2 String", "Quality",
                      {"0": 0, "1": 1}, ("accuracy", "f1"), ("not_equivalent", "equivalent"),
                      hf_text_a="sentence1", hf_text_b="sentence2"),
    "sst2": _GlueTask("sst2", "SST-2", "sst2", True, "sentence", None, "label",
                      {"0": 0, "1": 1}, ("accuracy",), ("negative", "positive")),
    "cola": _GlueTask("cola", "CoLA", "cola", False, 3, None, 1,
                      {"0": 0, "1": 1}, ("matthews",), ("unacceptable", "acceptable"), n_columns=4),
}


def available_glue_tasks() -> list[str]:
    """Task names accepted by :func:`load_glue`.

    Example:
        >>> available_glue_tasks()
        ['rte', 'mrpc', 'sst2', 'cola']
    """
    return list(GLUE_TASKS)


def _task(task: str) -> _GlueTask:
    key = task.lower().replace("-", "").replace("_", "")
    if key not in GLUE_TASKS:
        raise ValueError(f"unknown GLUE task {task!r}; available: {', '.join(GLUE_TASKS)}")
    return GLUE_TASKS[key]


def read_glue_tsv(path: str | os.PathLike, task: str) -> tuple[list[str], list[str] | None, list[int]]:
    """Parse one GLUE TSV file of ``task`` into ``(texts, pairs or None, labels)``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     p = Path(tmp) / "train.tsv"
        ...     _ = p.write_text('sentence\\tlabel\\nit \\'s a "gem" \\t1\\n', encoding="utf-8")
        ...     read_glue_tsv(p, "sst2")
        (['it \\'s a "gem"'], None, [1])
    """
    spec = _task(task)
    path = Path(path)
    texts: list[str] = []
    pairs: list[str] | None = [] if spec.text_b is not None else None
    labels: list[int] = []
    col: dict[str | int, int]        # column (name or position) -> position in a row
    n_columns: int | None
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        if spec.header:
            header = next(reader, None)
            if header is None:
                raise ValueError(f"{path}: empty file, expected a header row")
            header = [h.strip() for h in header]
            wanted = [c for c in (spec.text_a, spec.text_b, spec.label) if c is not None]
            missing = [c for c in wanted if c not in header]
            if missing:
                raise ValueError(f"{path}: header {header} lacks column(s) {missing} of GLUE {spec.folder}")
            col = {c: header.index(c) for c in wanted if isinstance(c, str)}   # all header names by now
            n_columns = len(header)
        else:
            col = {c: c for c in (spec.text_a, spec.text_b, spec.label) if isinstance(c, int)}
            n_columns = spec.n_columns
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            where = f"{path}:{reader.line_num}"
            if len(row) != n_columns:
                raise ValueError(f"{where}: expected {n_columns} tab-separated fields for GLUE {spec.folder}, "
                                 f"got {len(row)}")
            raw_label = row[col[spec.label]].strip()
            if raw_label not in spec.label_map:
                raise ValueError(f"{where}: label {raw_label!r} is not one of {sorted(spec.label_map)}")
            labels.append(spec.label_map[raw_label])
            texts.append(row[col[spec.text_a]].strip())
            if pairs is not None and spec.text_b is not None:     # pairs exist exactly when text_b does
                pairs.append(row[col[spec.text_b]].strip())
    return texts, pairs, labels


def _search_dirs(data_dir: str | os.PathLike | None) -> tuple[list[Path], bool]:
    """Where to look, and whether those folders were named explicitly (``--data-dir``, else
    ``$GLUE_DIR`` / ``$LSTSD_DATA``): a named folder is the only place looked in."""
    if data_dir is not None:
        return [Path(data_dir).expanduser()], True
    named = []
    if os.environ.get("GLUE_DIR"):
        named.append(Path(os.environ["GLUE_DIR"]).expanduser())
    if os.environ.get("LSTSD_DATA"):
        named.append(Path(os.environ["LSTSD_DATA"]).expanduser() / "glue")
    return (named, True) if named else ([cache_root() / "glue"], False)


def _find_task_dir(spec: _GlueTask, data_dir: str | os.PathLike | None) -> tuple[Path | None, list[Path]]:
    searched = []
    roots, named = _search_dirs(data_dir)
    for root in roots:
        for folder in (root / spec.folder, root):
            searched.append(folder)
            if (folder / "train.tsv").is_file() and (folder / "dev.tsv").is_file():
                if folder == root and root.name.lower().replace("-", "") != spec.folder.lower().replace("-", ""):
                    continue  # a bare root with train/dev is only accepted when named after the task
                return folder, searched
    if named:   # a folder that was named and lacks the data: an error, not a fall-back
        raise DataNotFoundError(
            f"GLUE {spec.folder} is not in {', '.join(str(r) for r in roots)} (named by --data-dir, $GLUE_DIR or "
            f"$LSTSD_DATA; need {spec.folder}/train.tsv and dev.tsv in the GLUE download layout)",
            "put the files there, or name the folder that holds them")
    return None, searched


def _missing_error(spec: _GlueTask, searched: list[Path]) -> FileNotFoundError:
    return FileNotFoundError(
        f"GLUE {spec.folder} not found: need {spec.folder}/train.tsv and {spec.folder}/dev.tsv in the GLUE "
        f"download layout (as written by GLUE's download_glue_data.py) under --data-dir, $GLUE_DIR, "
        f"$LSTSD_DATA/glue or {cache_root() / 'glue'} (searched: {', '.join(str(s) for s in searched[:6])}). "
        "Alternatively, when online, `pip install datasets` and use source='hf'."
    )


def _from_hf(spec: _GlueTask) -> tuple[tuple[list[str], list[str] | None, list[int]], ...]:
    try:
        import datasets  # lazy, optional
    except ImportError as exc:
        raise ImportError(f"GLUE {spec.folder} via Hugging Face needs the `datasets` package "
                          "(`pip install datasets`, online); or use local TSV files (source='files')") from exc
    try:
        ds: Any = datasets.load_dataset("glue", spec.hf_config)
    except Exception as exc:  # network / hub errors come in many types; re-raised below
        raise OSError(f"datasets.load_dataset('glue', {spec.hf_config!r}) failed ({type(exc).__name__}: {exc}); "
                      "it needs the Hugging Face hub (are you online?)") from exc
    out = []
    for split in ("train", "validation"):
        part = ds[split]
        pairs = list(part[spec.hf_text_b]) if spec.hf_text_b else None
        out.append((list(part[spec.hf_text_a]), pairs, [int(x) for x in part["label"]]))
    return tuple(out)


def load_glue(task: str, *, data_dir: str | os.PathLike | None = None, source: str = "auto",
              train_subset: int | float | None = None, seed: int = 0) -> TextSplits:
    """Load a GLUE task (``rte``, ``mrpc``, ``sst2``, ``cola``); the dev set is the test split.

    Args:
        task: task name (case-insensitive; ``SST-2`` / ``sst_2`` also accepted).
        data_dir: the GLUE root (holding ``RTE/``, ``MRPC/``...) or the task folder itself.
        source: ``"files"`` (local TSVs only), ``"hf"`` (``datasets.load_dataset``) or
            ``"auto"`` (local files when found, else ``datasets`` when importable, else a
            ``FileNotFoundError`` explaining where to put the files).
        train_subset: optional seeded stratified subset of the train split (count or fraction).
        seed: seed of that subset.

    Returns:
        :class:`TextSplits` named ``glue_<task>`` (``train_pairs``/``test_pairs`` set for RTE
        and MRPC), with the task's metrics and class names.

    Example (skipped: needs the GLUE files in ``glue_data``):
        >>> ts = load_glue("cola", data_dir="glue_data", train_subset=1000)   # doctest: +SKIP
        >>> ts.metrics                                                        # doctest: +SKIP
        ('matthews',)
    """
    spec = _task(task)
    if source not in ("auto", "files", "hf"):
        raise ValueError(f"source must be 'auto', 'files' or 'hf', got {source!r}")
    folder, searched = (None, []) if source == "hf" else _find_task_dir(spec, data_dir)
    if folder is not None:
        train = read_glue_tsv(folder / "train.tsv", spec.name)
        test = read_glue_tsv(folder / "dev.tsv", spec.name)
    elif source == "files":
        raise _missing_error(spec, searched)
    else:
        if source == "auto" and importlib.util.find_spec("datasets") is None:
            raise _missing_error(spec, searched)
        train, test = _from_hf(spec)
    ts = TextSplits(
        name=f"glue_{spec.name}",
        train_texts=train[0], train_labels=torch.tensor(train[2], dtype=torch.int64),
        test_texts=test[0], test_labels=torch.tensor(test[2], dtype=torch.int64),
        num_classes=len(spec.classes), train_pairs=train[1], test_pairs=test[1],
        metrics=spec.metrics, classes=list(spec.classes),
    )
    return ts.with_train_subset(train_subset, seed)
