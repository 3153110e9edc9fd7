"""CIFAR-10 / CIFAR-100 (Krizhevsky, 2009) from the official "python version" archives.

50,000 train / 10,000 test colour 32×32 images; 10 or 100 (fine) classes.

Looked up in the folder the user names, ``data_dir`` (``--data-dir``) or else ``$LSTSD_DATA``, and
only there (missing data there is an error, not a fall-back to another copy); when none is named,
in the download cache ``$LSTSD_CACHE/cifar`` (default ``~/.cache/lstsd/cifar``). In a folder the
tarball (``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``) is accepted, as is the
folder it extracts to (``cifar-10-batches-py/`` / ``cifar-100-python/``) or the folder
itself being that extracted folder. With ``download=True`` a missing archive is fetched
from ``https://www.cs.toronto.edu/~kriz/`` into the named folder, or else into the cache. The
tarball is read directly (no extraction to disk) and its md5 is checked unless
``verify_checksums=False``. The splits record where they came from in ``source``
(:func:`lstsd.harness.data.splits.data_source`).

Security note: the batches are Python pickles, and unpickling executes code. Only load
archives from a trusted source (the md5 check is on by default for that reason).

Example (skipped: needs the CIFAR-10 archive, downloaded when online):
    >>> ds = load_cifar10(download=True)                 # doctest: +SKIP
    >>> ds.train.features.shape, ds.num_classes          # doctest: +SKIP
    (torch.Size([50000, 3, 32, 32]), 10)
"""

from __future__ import annotations

import os
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np
import torch

from ..errors import DataNotFoundError
from .splits import (
    DatasetSplits,
    TensorSplit,
    cache_root,
    data_source,
    download_failed,
    download_url,
    explicit_data_root,
    md5_file,
)

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "CIFAR_URL",
    "load_cifar10",
    "load_cifar100",
]

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/"
CACHE_SUBFOLDER = "cifar"

CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip
# Standard per-channel statistics of the training images scaled to [0, 1].
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)


@dataclass(frozen=True)
class _CifarSpec:
    name: str
    title: str
    tarball: str
    folder: str
    md5: str
    train_members: tuple[str, ...]
    test_member: str
    label_key: bytes
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    meta_member: str | None = None  # pickled dict with the class names under meta_key
    meta_key: bytes | None = None

    @property
    def members(self) -> tuple[str, ...]:
        meta = (self.meta_member,) if self.meta_member else ()
        return self.train_members + (self.test_member,) + meta


CIFAR10 = _CifarSpec(
    name="cifar10", title="CIFAR-10", tarball="cifar-10-python.tar.gz", folder="cifar-10-batches-py",
    md5="c58f30108f718f92721af3b95e74349a",
    train_members=tuple(f"data_batch_{i}" for i in range(1, 6)), test_member="test_batch",
    label_key=b"labels", num_classes=10, mean=CIFAR10_MEAN, std=CIFAR10_STD,
)
CIFAR100 = _CifarSpec(
    name="cifar100", title="CIFAR-100", tarball="cifar-100-python.tar.gz", folder="cifar-100-python",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
    train_members=("train",), test_member="test",
    label_key=b"fine_labels", num_classes=100, mean=CIFAR100_MEAN, std=CIFAR100_STD,
    meta_member="meta", meta_key=b"fine_label_names",
)


# --------------------------------------------------------------------------- reading


def _corrupt(path: Path, problem: str) -> ValueError:
    return ValueError(
        f"{path}: {problem}. The file is corrupt or incomplete; delete it and download it again "
        "(download=True / --download)."
    )


def _unpickle(f: IO[bytes], where: str) -> Any:
    # pickle executes arbitrary code: only ever call this on trusted CIFAR files.
    try:
        return pickle.load(f, encoding="bytes")
    except Exception as exc:  # noqa: BLE001 - garbage input can raise almost anything
        raise ValueError(f"{where}: cannot unpickle ({type(exc).__name__}: {exc})") from exc


def _read_tarball(path: Path, spec: _CifarSpec) -> dict[str, Any]:
    """Unpickle the wanted members in a single forward pass over the gzip stream."""
    wanted, found = set(spec.members), {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for member in tar:
                base = PurePosixPath(member.name).name
                if member.isfile() and base in wanted and base not in found:
                    f = tar.extractfile(member)
                    assert f is not None
                    try:
                        found[base] = _unpickle(f, f"{path}:{member.name}")
                    except ValueError as exc:
                        raise _corrupt(path, str(exc)) from exc
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise _corrupt(path, f"cannot read the archive ({type(exc).__name__}: {exc})") from exc
    missing = sorted(wanted - set(found))
    if missing:
        raise _corrupt(path, f"archive lacks member(s) {', '.join(missing)}")
    return found


def _read_folder(folder: Path, spec: _CifarSpec) -> dict[str, Any]:
    found = {}
    for name in spec.members:
        path = folder / name
        if not path.is_file():
            raise _corrupt(folder, f"folder lacks file {name}")
        with open(path, "rb") as f:
            try:
                found[name] = _unpickle(f, str(path))
            except ValueError as exc:
                raise _corrupt(path, str(exc)) from exc
    return found


def _arrays(batch: Any, spec: _CifarSpec, where: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(batch, dict) or b"data" not in batch or spec.label_key not in batch:
        raise ValueError(f"{where}: expected a dict with keys b'data' and {spec.label_key!r}")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[spec.label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(f"{where}: b'data' must be uint8 N×3072, got {data.dtype} {data.shape}")
    if labels.shape != (data.shape[0],):
        raise ValueError(f"{where}: {data.shape[0]} images but {labels.shape} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise ValueError(f"{where}: labels outside [0, {spec.num_classes})")
    return data, labels


def _to_split(data: np.ndarray, labels: np.ndarray, spec: _CifarSpec) -> TensorSplit:
    # rows are 1024 red, 1024 green, 1024 blue values, each plane row-major: i.e. CHW.
    x = torch.from_numpy(data).reshape(-1, 3, 32, 32).float().div_(255.0)
    x.sub_(torch.tensor(spec.mean).view(1, 3, 1, 1)).div_(torch.tensor(spec.std).view(1, 3, 1, 1))
    return TensorSplit(x, torch.from_numpy(labels))


# --------------------------------------------------------------------------- locating


def _search_dirs(data_dir: str | os.PathLike | None) -> list[tuple[Path, str]]:
    """``(folder, origin)`` pairs searched: the user's folder alone if one is named, else the cache."""
    explicit = explicit_data_root(data_dir)
    if explicit is not None:
        return [explicit]
    return [(cache_root() / CACHE_SUBFOLDER, "cache")]


def _find(folder: Path, spec: _CifarSpec) -> Path | None:
    """The tarball or extracted folder for ``spec`` inside (or being) ``folder``."""
    if (folder / spec.tarball).is_file():
        return folder / spec.tarball
    for candidate in (folder / spec.folder, folder):
        if all((candidate / name).is_file() for name in spec.members):
            return candidate
    return None


def _locate(spec: _CifarSpec, data_dir: str | os.PathLike | None,
            download: bool) -> tuple[Path, bool, str]:
    """(source, just_downloaded, origin)."""
    searched = _search_dirs(data_dir)
    for folder, origin in searched:
        if (source := _find(folder, spec)) is not None:
            return source, False, origin
    explicit = explicit_data_root(data_dir)
    if not download:
        wanted = f"{spec.tarball} or an extracted {spec.folder}/"
        if explicit is not None:
            root, how = explicit
            other = ("leave out --data-dir to use $LSTSD_DATA (when set) or" if how == "--data-dir"
                     else "unset LSTSD_DATA to use")
            raise DataNotFoundError(
                f"{spec.title} is not in {root} (named by {how}): looked for {wanted} there",
                f"put the archive there, or pass --download to fetch it into it, or {other} the download "
                f"cache ({cache_root() / CACHE_SUBFOLDER})")
        raise DataNotFoundError(
            f"{spec.title} not found: looked for {wanted} in {', '.join(str(f) for f, _ in searched)}",
            f"when online pass --download (download=True, fetches {CIFAR_URL}{spec.tarball}); or download it "
            "yourself, put it in a folder and pass --data-dir /path (data_dir=...) or set LSTSD_DATA=/path")
    dest = (explicit[0] if explicit is not None else cache_root() / CACHE_SUBFOLDER) / spec.tarball
    try:
        download_url(CIFAR_URL + spec.tarball, dest, spec.md5)
    except OSError as exc:
        raise download_failed(CIFAR_URL + spec.tarball, exc) from exc
    return dest, True, "download"


def _load(spec: _CifarSpec, data_dir: str | os.PathLike | None, download: bool,
          verify_checksums: bool) -> DatasetSplits:
    source, fresh, origin = _locate(spec, data_dir, download)
    if source.is_file():
        if verify_checksums and not fresh and (actual := md5_file(source)) != spec.md5:
            raise ValueError(f"{source}: checksum mismatch (md5 {actual}, expected {spec.md5}): delete it and "
                             "download it again, or pass verify_checksums=False to use it anyway")
        batches = _read_tarball(source, spec)
    else:
        batches = _read_folder(source, spec)

    def arrays(members: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
        parts = [_arrays(batches[m], spec, f"{source}:{m}") for m in members]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    train_x, train_y = arrays(spec.train_members)
    test_x, test_y = arrays((spec.test_member,))

    if spec.meta_member is not None:
        meta = batches[spec.meta_member]
        if not isinstance(meta, dict) or spec.meta_key not in meta:
            raise ValueError(f"{source}:{spec.meta_member}: expected a dict with key {spec.meta_key!r}")
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[spec.meta_key]]
    else:
        classes = list(CIFAR10_CLASSES)
    return DatasetSplits(
        name=spec.name,
        train=_to_split(train_x, train_y, spec),
        test=_to_split(test_x, test_y, spec),
        val=None,
        num_classes=spec.num_classes,
        in_channels=3,
        image_size=32,
        classes=classes,
        source=data_source(spec.name, origin, source, [train_x, train_y, test_x, test_y],
                           [source] if source.is_file() else [source / m for m in spec.members]),
    )


def load_cifar10(data_dir: str | os.PathLike | None = None, *, download: bool = False,
                 verify_checksums: bool = True) -> DatasetSplits:
    """Load CIFAR-10 as float32 ``N×3×32×32`` tensors normalised per channel.

    Args:
        data_dir: folder holding ``cifar-10-python.tar.gz`` or ``cifar-10-batches-py/``.
        download: fetch the archive into the cache if it is found nowhere.
        verify_checksums: check the tarball's md5 (extracted folders are not checked).

    Raises:
        FileNotFoundError: (:class:`~lstsd.harness.errors.DataNotFoundError`) not in the folder named
            by ``data_dir`` / ``$LSTSD_DATA``, or, when none is named, not in the cache.
        ValueError: corrupt/truncated archive, missing member or bad content.

    Example (skipped: needs the CIFAR-10 archive in ``~/data``):
        >>> load_cifar10("~/data").train.labels.shape  # doctest: +SKIP
        torch.Size([50000])
    """
    return _load(CIFAR10, data_dir, download, verify_checksums)


def load_cifar100(data_dir: str | os.PathLike | None = None, *, download: bool = False,
                  verify_checksums: bool = True) -> DatasetSplits:
    """Load CIFAR-100 (fine labels) as float32 ``N×3×32×32`` tensors normalised per channel.

    Same arguments and errors as :func:`load_cifar10`, with ``cifar-100-python.tar.gz`` /
    ``cifar-100-python/``; class names come from the archive's ``meta``.

    Example (skipped: needs the CIFAR-100 archive in ``~/data``):
        >>> load_cifar100("~/data").classes[:2]  # doctest: +SKIP
        ['apple', 'aquarium_fish']
    """
    return _load(CIFAR100, data_dir, download, verify_checksums)
