"""Data containers, stratified subsets / validation splits, and small file helpers.

The harness keeps every data set as tensors in memory (the largest, CIFAR, is
about 600 MB as float32), so a split is just ``features`` plus ``labels``.

Example:
    >>> import torch
    >>> split = TensorSplit(torch.zeros(6, 1, 2, 2), torch.tensor([0, 0, 0, 1, 1, 1]))
    >>> idx = stratified_subset(split.labels, 4, seed=0)
    >>> len(split.subset(idx))
    4
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import DownloadError, is_disk_full

Features = torch.Tensor | dict[str, torch.Tensor]

__all__ = [
    "TensorSplit",
    "DatasetSplits",
    "stratified_subset",
    "train_val_split",
    "cache_root",
    "md5_file",
    "download_url",
    "download_failed",
    "explicit_data_root",
    "data_source",
]


# --------------------------------------------------------------------------- containers


@dataclass
class TensorSplit:
    """One split of a data set held as tensors.

    Args:
        features: a tensor whose first dimension indexes samples (images are float32
            ``N×C×H×W``, already normalised), or a dict of such tensors sliced together
            (tokenised text: ``{"input_ids": ..., "attention_mask": ...}``).
        labels: int64 class indices, shape ``(N,)``.

    Example:
        >>> s = TensorSplit(torch.randn(3, 1, 8, 8), torch.tensor([0, 1, 1]))
        >>> len(s), s.subset(torch.tensor([2])).labels.tolist()
        (3, [1])
    """

    features: Features
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.labels, torch.Tensor) or self.labels.ndim != 1:
            raise ValueError("TensorSplit.labels must be a 1-D tensor")
        if self.labels.dtype != torch.int64:
            raise ValueError(f"TensorSplit.labels must be int64, got {self.labels.dtype}")
        n = self.labels.shape[0]
        for key, tensor in _feature_items(self.features):
            if tensor.ndim == 0 or tensor.shape[0] != n:
                where = "features" if key is None else f"features[{key!r}]"
                raise ValueError(
                    f"TensorSplit.{where} has first dimension "
                    f"{tuple(tensor.shape)[:1] or '()'} but there are {n} labels"
                )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: torch.Tensor) -> TensorSplit:
        """Rows ``indices`` of this split (new tensors, same device)."""
        indices = indices.to(self.labels.device)
        if isinstance(self.features, dict):
            feats: Features = {k: v[indices.to(v.device)] for k, v in self.features.items()}
        else:
            feats = self.features[indices.to(self.features.device)]
        return TensorSplit(feats, self.labels[indices])

    def to(self, device: torch.device | str) -> TensorSplit:
        """This split with every tensor moved to ``device``."""
        if isinstance(self.features, dict):
            feats: Features = {k: v.to(device) for k, v in self.features.items()}
        else:
            feats = self.features.to(device)
        return TensorSplit(feats, self.labels.to(device))


@dataclass
class DatasetSplits:
    """A loaded data set: train/test (and optional validation) splits plus metadata.

    ``in_channels`` and ``image_size`` are set for image data sets only (``H == W``).

    ``source`` says where the data came from, for the run's records (see :func:`data_source`):
    ``{"dataset", "origin", "path", "files", "sha256"}``; empty when a loader does not say.

    Example:
        >>> ds = DatasetSplits("toy", TensorSplit(torch.zeros(2, 1, 4, 4), torch.tensor([0, 1])),
        ...                    TensorSplit(torch.zeros(1, 1, 4, 4), torch.tensor([1])), None, 2, 1, 4)
        >>> ds.num_classes, ds.val is None
        (2, True)
    """

    name: str
    train: TensorSplit
    test: TensorSplit
    val: TensorSplit | None
    num_classes: int
    in_channels: int | None
    image_size: int | None
    classes: list[str] | None = None
    source: dict[str, Any] = field(default_factory=dict)


def _feature_items(features: Features) -> list[tuple[str | None, torch.Tensor]]:
    if isinstance(features, dict):
        if not features:
            raise ValueError("dict features must contain at least one tensor")
        return list(features.items())
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"features must be a tensor or a dict of tensors, got {type(features).__name__}")
    return [(None, features)]


# --------------------------------------------------------------------------- subsets and splits


def _resolve_size(size: int | float, n: int, what: str) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, float)):
        raise TypeError(f"{what} must be an int (count) or a float fraction, got {size!r}")
    if isinstance(size, float):
        if not 0.0 < size <= 1.0:
            raise ValueError(f"{what} as a fraction must be in (0, 1], got {size}")
        return max(1, int(round(size * n)))
    if not 1 <= size <= n:
        raise ValueError(f"{what} must be between 1 and {n} (the number of samples), got {size}")
    return int(size)


def _allocate(counts: torch.Tensor, size: int) -> torch.Tensor:
    """Per-class sample counts summing to ``size``: proportional, at least one per class.

    Largest-remainder rounding; ties go to the lower class index (deterministic).
    """
    n = int(counts.sum())
    quota = counts.double() * size / n
    alloc = torch.clamp(quota.floor().long(), min=1)
    remainder = quota - alloc.double()  # negative where a class was bumped up to 1
    while int(alloc.sum()) > size:  # bumping tiny classes to 1 overshot: take from the richest
        donors = torch.where(alloc > 1, remainder, torch.full_like(remainder, float("inf")))
        j = int(torch.argmin(donors))
        alloc[j] -= 1
        remainder[j] += 1.0
    while int(alloc.sum()) < size:
        room = torch.where(alloc < counts, remainder, torch.full_like(remainder, float("-inf")))
        j = int(torch.argmax(room))
        alloc[j] += 1
        remainder[j] -= 1.0
    return alloc


def stratified_subset(labels: torch.Tensor, size: int | float, seed: int) -> torch.Tensor:
    """Seeded stratified subset: sorted int64 indices into ``labels``.

    ``size`` is a count (int) or a fraction in (0, 1] (float). Class proportions are
    kept (largest-remainder rounding) and every class present in ``labels`` keeps at
    least one sample, so ``size`` must be at least the number of classes. The same
    ``(labels, size, seed)`` always gives the same indices.

    Example:
        >>> labels = torch.tensor([0] * 80 + [1] * 20)
        >>> idx = stratified_subset(labels, 0.1, seed=0)
        >>> torch.bincount(labels[idx]).tolist()
        [8, 2]
    """
    labels = labels.detach().cpu().long()
    n = labels.numel()
    if labels.ndim != 1 or n == 0:
        raise ValueError("labels must be a non-empty 1-D tensor")
    k = _resolve_size(size, n, "subset size")
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    if k < len(classes):
        raise ValueError(
            f"subset size {k} (from {size!r}) is too small to hold every class: "
            f"{len(classes)} classes are present"
        )
    if k == n:
        return torch.arange(n, dtype=torch.int64)
    alloc = _allocate(counts, k)
    gen = torch.Generator().manual_seed(int(seed))
    order = torch.argsort(inverse, stable=True)  # indices grouped by class, ascending within
    chosen, start = [], 0
    for c in range(len(classes)):  # one randperm per class, not per sample
        members = order[start : start + int(counts[c])]
        start += int(counts[c])
        chosen.append(members[torch.randperm(len(members), generator=gen)[: int(alloc[c])]])
    return torch.sort(torch.cat(chosen)).values


def train_val_split(labels: torch.Tensor, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified split of ``labels`` into sorted (train, val) int64 index tensors.

    The two are disjoint and together cover ``range(len(labels))``. ``val_fraction``
    must be in [0, 1); 0 gives an empty validation set. Both sides must keep at
    least one sample of every class.

    Example:
        >>> labels = torch.tensor([0, 1] * 10)
        >>> tr, va = train_val_split(labels, 0.2, seed=0)
        >>> len(tr), len(va), torch.bincount(labels[va]).tolist()
        (16, 4, [2, 2])
    """
    labels = labels.detach().cpu().long()
    n = labels.numel()
    if not 0.0 <= float(val_fraction) < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0:
        return torch.arange(n, dtype=torch.int64), torch.empty(0, dtype=torch.int64)
    n_val = max(1, int(round(float(val_fraction) * n)))
    val = stratified_subset(labels, n_val, seed)  # raises if too small for every class
    mask = torch.ones(n, dtype=torch.bool)
    mask[val] = False
    train = torch.nonzero(mask).flatten()
    missing = set(labels.unique().tolist()) - set(labels[train].unique().tolist())
    if missing:
        raise ValueError(
            f"val_fraction={val_fraction} leaves no training sample for classes {sorted(missing)}; "
            "use a smaller val_fraction"
        )
    return train, val


# --------------------------------------------------------------------------- file helpers
# Shared by the data set readers (fashion_mnist.py, cifar.py).


def cache_root() -> Path:
    """Download cache root: ``$LSTSD_CACHE`` if set, else ``~/.cache/lstsd``.

    Each data set uses a subfolder (``fashion-mnist/``, ``cifar/``).
    """
    env = os.environ.get("LSTSD_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lstsd"


def md5_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex md5 digest of a file, read in chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def download_failed(url: str, exc: BaseException) -> BaseException:
    """The error to raise when fetching ``url`` failed with ``exc``: a one-line
    :class:`~lstsd.harness.errors.DownloadError`, unless ``exc`` already is one or says the disk is full.

    Example:
        >>> str(download_failed("http://x/f.gz", OSError("no route to host"))).split(" — ")[0]
        'could not download http://x/f.gz: no route to host'
    """
    if isinstance(exc, DownloadError) or is_disk_full(exc) or not isinstance(exc, OSError):
        return exc
    return DownloadError(f"could not download {url}: {exc}",
                         "check that this machine is online and try again, or get the file another way and pass "
                         "its folder with --data-dir")


def download_url(url: str, dest: str | os.PathLike, md5: str | None = None, *, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically, checking ``md5`` when given.

    The body is streamed into a temporary file next to ``dest`` which is renamed
    over ``dest`` only once complete and verified, so an interrupted or corrupt
    download never leaves a file that looks valid.

    Example (skipped: needs the network):
        >>> download_url("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        ...              "/tmp/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a")  # doctest: +SKIP
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        digest = hashlib.md5()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    while chunk := response.read(1 << 20):
                        out.write(chunk)
                        digest.update(chunk)
            except OSError as exc:   # URLError, timeouts, refused connections; a full disk is not "offline"
                raise download_failed(url, exc) from exc
        if md5 is not None and digest.hexdigest() != md5:
            raise ValueError(
                f"downloaded {url} has md5 {digest.hexdigest()}, expected {md5} — "
                "the download is corrupt: try again"
            )
        os.replace(tmp_name, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    return dest


# --------------------------------------------------------------------------- where the data came from


def explicit_data_root(data_dir: str | os.PathLike | None) -> tuple[Path, str] | None:
    """The folder the user named for the data, and how: ``data_dir`` (``--data-dir``) first, else
    ``$LSTSD_DATA``; ``None`` when neither is set.

    A named folder is the only place a loader then looks: data missing there is an error, never a
    silent fall-back to another copy.

    Example:
        >>> explicit_data_root("/data")
        (PosixPath('/data'), '--data-dir')
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser(), "--data-dir"
    if os.environ.get("LSTSD_DATA"):
        return Path(os.environ["LSTSD_DATA"]).expanduser(), "$LSTSD_DATA"
    return None


def data_source(dataset: str, origin: str, path: str | os.PathLike | None,
                arrays: list[np.ndarray | torch.Tensor],
                files: list[str | os.PathLike] | None = None) -> dict[str, Any]:
    """The ``source`` record of a loaded data set (:attr:`DatasetSplits.source`).

    Args:
        dataset: the data set's name.
        origin: how the location was chosen: ``"--data-dir"``, ``"$LSTSD_DATA"``, ``"system"``,
            ``"cache"``, ``"download"`` or ``"scikit-learn"``.
        path: the folder or file read (made absolute).
        arrays: the decoded data (e.g. train images, train labels, test images, test labels), in a
            fixed order: ``sha256`` is computed over their dtypes, shapes and bytes, so it is the same
            for every copy of the same data however it is packed (gzipped or not, tarball or folder).
        files: the files read (made absolute).

    Example:
        >>> src = data_source("toy", "cache", "/tmp/toy", [np.zeros(3, dtype=np.uint8)])
        >>> src["origin"], src["path"], len(src["sha256"])
        ('cache', '/tmp/toy', 64)
    """
    digest = hashlib.sha256()
    for array in arrays:
        a = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
    return {"dataset": dataset, "origin": origin,
            "path": None if path is None else os.path.abspath(os.fspath(path)),
            "files": [os.path.abspath(os.fspath(f)) for f in files or []],
            "sha256": digest.hexdigest()}
