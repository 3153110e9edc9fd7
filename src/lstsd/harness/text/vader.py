"""The VADER ground-truth sentiment sets (Hutto & Gilbert, ICWSM 2014) as binary classification.

Hutto, C.J. & Gilbert, E.E. (2014). "VADER: A Parsimonious Rule-based Model for Sentiment
Analysis of Social Media Text." ICWSM-14. Each sentence-level snippet carries the mean of
>= 20 human intensity ratings in [-4, 4]. The sets (file name in the archive, rows):

* ``movies`` — ``movieReviewSnippets_GroundTruth.txt``: 10,605 Rotten Tomatoes snippets (Pang & Lee 2004);
* ``tweets`` — ``tweets_GroundTruth.txt``: 4,200 tweets;
* ``amazon`` — ``amazonReviewSnippets_GroundTruth.txt``: 3,708 product-review snippets (Hu & Liu 2004);
* ``nyt`` — ``nytEditorialSnippets_GroundTruth.txt``: 5,190 New York Times editorial snippets.

Source and licence: the files ship inside the source distribution of the PyPI package
``vaderSentiment==3.3.2`` (``additional_resources/hutto_ICWSM_2014.tar.gz``), which is
MIT-licensed ("The MIT License (MIT), Copyright (c) 2016 C.J. Hutto": ``LICENSE.txt`` of the
sdist, also ``License: MIT License`` in its PKG-INFO). The data's own README states no
separate licence and asks users to cite the paper above. :func:`fetch_vader` copies
``LICENSE.txt`` and that README (``README_hutto_ICWSM_2014.txt``) beside the data.

Format: one snippet per line, tab-separated ``id``, mean score, text, CRLF line ends (LF is
accepted too). Encoding: the four files are valid UTF-8 (in 3.3.2 only the movie and tweet
files contain non-ASCII characters, e.g. "clichés", "£"); each line is decoded as UTF-8 and,
should a line not be valid UTF-8, as Windows-1252 with undecodable bytes replaced (U+FFFD),
so odd bytes never abort loading. A leading BOM is ignored; only the first two tabs split
(a tab inside the text stays in the text); blank lines are skipped.

Labels: the sign of the mean score, positive → 1, negative → 0; snippets scored exactly 0
are dropped. Train/test is a seeded stratified split (:func:`load_vader`).

Example (skipped: fetches the VADER files from PyPI, which needs the network):
    >>> fetch_vader()                               # doctest: +SKIP
    PosixPath('/root/.cache/lstsd/vader')
    >>> ts = load_vader("tweets", seed=0)          # doctest: +SKIP
    >>> len(ts.train_texts), len(ts.test_texts)    # doctest: +SKIP
    (3357, 839)
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

import torch

from ..data.splits import cache_root, train_val_split
from ..errors import DataNotFoundError
from .tokenize import TextSplits

__all__ = ["VADER_FILES", "VADER_SDIST_SHA256", "VADER_VERSION", "fetch_vader", "load_vader", "probe_sentences",
           "read_vader_file", "vader_dir"]

VADER_VERSION = "3.3.2"
VADER_SDIST = f"vaderSentiment-{VADER_VERSION}.tar.gz"
# sha256 of the sdist as served by PyPI (checked after `pip download`).
VADER_SDIST_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
INNER_ARCHIVE = "additional_resources/hutto_ICWSM_2014.tar.gz"
VADER_FILES: dict[str, str] = {
    "movies": "movieReviewSnippets_GroundTruth.txt",
    "tweets": "tweets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
}
FETCH_COMMAND = "lstsd data fetch vader"
CACHE_SUBFOLDER = "vader"
_LICENSE_NAME = "LICENSE.txt"
_README_OUT = "README_hutto_ICWSM_2014.txt"


def vader_dir() -> Path:
    """The download cache of the VADER files: ``$LSTSD_CACHE/vader`` (default ``~/.cache/lstsd/vader``)."""
    return cache_root() / CACHE_SUBFOLDER


# --------------------------------------------------------------------------- fetching


def _pip_download_sdist(dest: Path) -> Path:
    """``pip download`` the vaderSentiment sdist into ``dest``; the path of the ``.tar.gz``."""
    cmd = [sys.executable, "-m", "pip", "download", f"vaderSentiment=={VADER_VERSION}", "--no-deps",
           "--no-binary", ":all:", "--disable-pip-version-check", "-d", str(dest)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OSError(f"could not run {' '.join(cmd)}: {exc}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise OSError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}); PyPI must be reachable:\n{tail}")
    sdist = dest / VADER_SDIST
    if not sdist.is_file():
        found = sorted(p.name for p in dest.iterdir())
        raise OSError(f"pip download did not produce {VADER_SDIST} in {dest} (found: {found})")
    return sdist


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _member_bytes(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    """The content of ``member``, a regular file (``extractfile`` gives ``None`` only for other kinds)."""
    file = archive.extractfile(member)
    if file is None:
        raise ValueError(f"{member.name} is not a regular file")
    return file.read()


def _extract(sdist: Path, out: Path) -> None:
    """Write the ground-truth files, the sdist's LICENSE.txt and the data README into ``out``."""
    wanted = set(VADER_FILES.values())
    with tarfile.open(sdist, "r:gz") as outer:
        inner_bytes = license_bytes = None
        for member in outer:
            rel = PurePosixPath(*PurePosixPath(member.name).parts[1:])  # drop "vaderSentiment-3.3.2/"
            if not member.isfile():
                continue
            if str(rel) == INNER_ARCHIVE:
                inner_bytes = _member_bytes(outer, member)
            elif str(rel) == _LICENSE_NAME:
                license_bytes = _member_bytes(outer, member)
    if inner_bytes is None:
        raise ValueError(f"{sdist} lacks {INNER_ARCHIVE}")
    if license_bytes is None:
        raise ValueError(f"{sdist} lacks {_LICENSE_NAME}")
    (out / _LICENSE_NAME).write_bytes(license_bytes)
    found = set()
    with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
        for member in inner:
            base = PurePosixPath(member.name).name
            if not member.isfile():
                continue
            # Only plain files with known names are written, under our own names: no path
            # from the archive is ever used, so nothing can escape ``out``.
            if base in wanted:
                (out / base).write_bytes(_member_bytes(inner, member))
                found.add(base)
            elif base == "_README_.txt":
                (out / _README_OUT).write_bytes(_member_bytes(inner, member))
    missing = sorted(wanted - found)
    if missing:
        raise ValueError(f"{sdist}:{INNER_ARCHIVE} lacks {', '.join(missing)}")


def fetch_vader(cache_dir: str | os.PathLike | None = None, *, force: bool = False) -> Path:
    """Download the VADER ground-truth files with pip and place them in ``cache_dir``.

    Runs ``python -m pip download vaderSentiment==3.3.2 --no-deps --no-binary :all:`` (the
    current interpreter's pip; PyPI must be reachable; pip prepares the sdist's metadata,
    which may fetch setuptools into its isolated build environment), checks the sdist's
    sha256, opens ``additional_resources/hutto_ICWSM_2014.tar.gz`` inside it and writes
    only the four ``*_GroundTruth.txt`` files, the package's ``LICENSE.txt`` (MIT) and the
    data README. The folder is assembled in a temporary directory beside the target and
    renamed into place, so an interrupted fetch never leaves a partial folder.

    Args:
        cache_dir: the folder that will hold the files (default :func:`vader_dir`).
        force: fetch again even when all files are present.

    Returns:
        The folder holding the files.

    Example (skipped: downloads from PyPI, which needs the network):
        >>> folder = fetch_vader()                                  # doctest: +SKIP
        >>> sorted(p.name for p in folder.iterdir())[:2]           # doctest: +SKIP
        ['LICENSE.txt', 'README_hutto_ICWSM_2014.txt']
    """
    target = Path(cache_dir).expanduser() if cache_dir is not None else vader_dir()
    if not force and all((target / name).is_file() for name in VADER_FILES.values()):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-fetch-", dir=target.parent))
    try:
        sdist = _pip_download_sdist(work / "sdist")
        digest = _sha256(sdist)
        if digest != VADER_SDIST_SHA256:
            raise ValueError(f"{sdist.name} has sha256 {digest}, expected {VADER_SDIST_SHA256}; "
                             "the download is corrupt or not the PyPI release")
        staged = work / "vader"
        staged.mkdir()
        _extract(sdist, staged)
        if target.exists():  # a folder cannot be renamed over a non-empty one: move the old aside
            os.replace(target, work / "old")
        os.replace(staged, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


# --------------------------------------------------------------------------- reading


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def read_vader_file(path: str | os.PathLike) -> list[tuple[str, float, str]]:
    """Parse one ``*_GroundTruth.txt`` file into ``(id, mean_score, text)`` rows.

    See the module docstring for the format and encoding rules. Raises ``ValueError``
    naming the line for a malformed row (fewer than three fields, non-numeric score).

    Example:
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     p = Path(tmp) / "t.txt"
        ...     _ = p.write_bytes(b"1\\t2.5\\tgreat!\\r\\n2\\t-1.0\\tmeh\\r\\n")
        ...     read_vader_file(p)
        [('1', 2.5, 'great!'), ('2', -1.0, 'meh')]
    """
    path = Path(path)
    data = path.read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    rows = []
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        line = _decode(raw.rstrip(b"\r"))
        if not line.strip():
            continue
        fields = line.split("\t", 2)
        if len(fields) != 3:
            raise ValueError(f"{path}:{lineno}: expected 'id<TAB>score<TAB>text', got {line[:80]!r}")
        try:
            score = float(fields[1])
        except ValueError:
            raise ValueError(f"{path}:{lineno}: score {fields[1]!r} is not a number") from None
        rows.append((fields[0].strip(), score, fields[2].strip()))
    return rows


def _locate(name: str, data_dir: str | os.PathLike | None) -> Path:
    """The VADER file ``name``: in ``data_dir``, else ``$LSTSD_DATA``, when one is named (and only
    there: a named folder without the file is an error, never a fall-back to another copy); else
    in the cache that ``lstsd data fetch vader`` fills."""
    explicit = data_dir if data_dir is not None else os.environ.get("LSTSD_DATA") or None
    if explicit is not None:
        root = Path(explicit).expanduser()
        searched = [root, root / CACHE_SUBFOLDER, root / "hutto_ICWSM_2014"]
        for folder in searched:
            if (folder / name).is_file():
                return folder / name
        how = "--data-dir" if data_dir is not None else "$LSTSD_DATA"
        raise DataNotFoundError(
            f"VADER file {name} is not in {root} (named by {how}; searched {', '.join(str(s) for s in searched)})",
            f"copy it there from {vader_dir()} (`{FETCH_COMMAND}` fills that folder), or drop {how} to read the cache")
    if (vader_dir() / name).is_file():
        return vader_dir() / name
    raise DataNotFoundError(f"VADER file {name} not found in {vader_dir()}",
                            f"get it with `{FETCH_COMMAND}` (needs pip access to PyPI)")


def load_vader(subset: str = "movies", *, data_dir: str | os.PathLike | None = None, seed: int = 0,
               test_fraction: float = 0.2, train_subset: int | float | None = None) -> TextSplits:
    """Load one VADER set as binary sentiment classification with a seeded stratified split.

    Looked up in ``data_dir`` (or its ``vader/`` / ``hutto_ICWSM_2014/`` subfolder), then
    ``$LSTSD_DATA`` likewise, then the cache :func:`vader_dir`. Rows scored exactly 0 are
    dropped; the rest are labelled 1 (positive score) or 0 (negative). ``test_fraction``
    of them, stratified by label, form the test split (seeded by ``seed``); the rest train.
    ``train_subset`` (count or fraction) then keeps a seeded stratified part of the train
    split. Rows keep their file order within each split. Duplicate snippets (2 in
    movies, 11 in amazon) are kept as in the source.

    Args:
        subset: ``"movies"``, ``"tweets"``, ``"amazon"`` or ``"nyt"``.
        data_dir: folder searched first.
        seed: seed of the test split and of the train subset.
        test_fraction: fraction in (0, 1) of the samples held out for testing.
        train_subset: optional size of a stratified train subset.

    Returns:
        :class:`TextSplits` named ``vader_<subset>``, classes ``["negative", "positive"]``,
        metrics ``("accuracy",)``.

    Example (skipped: needs the VADER files, from ``lstsd data fetch vader``):
        >>> ts = load_vader("amazon", test_fraction=0.2)     # doctest: +SKIP
        >>> ts.num_classes, ts.classes                       # doctest: +SKIP
        (2, ['negative', 'positive'])
    """
    key = subset.lower()
    if key not in VADER_FILES:
        raise ValueError(f"unknown VADER subset {subset!r}; available: {', '.join(VADER_FILES)}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rows = [r for r in read_vader_file(_locate(VADER_FILES[key], data_dir)) if r[1] != 0.0]
    if not rows:
        raise ValueError(f"VADER {key}: no rows with a non-zero score")
    texts = [r[2] for r in rows]
    labels = torch.tensor([1 if r[1] > 0 else 0 for r in rows], dtype=torch.int64)
    train_idx, test_idx = train_val_split(labels, test_fraction, seed)
    ts = TextSplits(
        name=f"vader_{key}",
        train_texts=[texts[i] for i in train_idx.tolist()], train_labels=labels[train_idx],
        test_texts=[texts[i] for i in test_idx.tolist()], test_labels=labels[test_idx],
        num_classes=2, metrics=("accuracy",), classes=["negative", "positive"],
    )
    return ts.with_train_subset(train_subset, seed)


def probe_sentences(n: int, *, subset: str = "nyt", data_dir: str | os.PathLike | None = None,
                    seed: int = 0) -> tuple[list[str], Path]:
    """``n`` fixed general-text sentences and the file they come from: the language-model task's
    forgetting probe (its per-token loss on text it is not fine-tuned on, before and after).

    The snippets of one VADER set (default ``nyt``, the New York Times editorial snippets: plain
    English prose nobody here wrote), every row whatever its score, deduplicated in file order; a
    draw of ``n`` of them seeded by ``seed`` (fixed, so every run of a comparison probes the same
    sentences), returned in file order. The file is looked up as :func:`load_vader` does.

    Example (skipped: needs the VADER files, from ``lstsd data fetch vader``):
        >>> sentences, path = probe_sentences(3)              # doctest: +SKIP
        >>> len(sentences), path.name                           # doctest: +SKIP
        (3, 'nytEditorialSnippets_GroundTruth.txt')
    """
    key = subset.lower()
    if key not in VADER_FILES:
        raise ValueError(f"unknown VADER subset {subset!r}; available: {', '.join(VADER_FILES)}")
    path = _locate(VADER_FILES[key], data_dir)
    texts = list(dict.fromkeys(text for _, _, text in read_vader_file(path) if text))
    if not 1 <= n <= len(texts):
        raise ValueError(f"asked for {n} probe sentences; VADER {key} has {len(texts)} distinct ones: ask for 1 to "
                         f"{len(texts)}")
    chosen = sorted(random.Random(seed).sample(range(len(texts)), n))
    return [texts[i] for i in chosen], path
