"""Fashion-MNIST (Xiao et al., 2017) from its four IDX files, plus a generic IDX reader.

60,000 train / 10,000 test grey-scale 28×28 images of 10 clothing classes.

Where the files are looked for (each folder is tried as is and with a ``fashion-mnist/`` subfolder):

* a folder named by the user, ``data_dir`` (the ``--data-dir`` flag), else ``$LSTSD_DATA``: only
  there. Files missing there are an error (never a silent fall-back to another copy); with
  ``download=True`` they are downloaded into that folder.
* otherwise, in order: ``/usr/share/datasets/fashion-mnist/`` (Debian/Ubuntu: ``apt-get install
  dataset-fashion-mnist``), then the download cache ``$LSTSD_CACHE/fashion-mnist`` (default
  ``~/.cache/lstsd/fashion-mnist``), then, only with ``download=True``, a download from the
  canonical location into that cache.

The loaded splits record where they came from in ``source`` (origin, folder, files, and a sha256
of the decoded images and labels: :func:`lstsd.harness.data.splits.data_source`).

Each file may be gzipped (``train-images-idx3-ubyte.gz``) or not (``train-images-idx3-ubyte``).

Checksums: the canonical ``.gz`` files have published md5s (``GZ_MD5``). The Debian package
ships the same data recompressed, so its ``.gz`` bytes differ; the md5 of the *decompressed*
content (``RAW_MD5``) is checked instead and is identical. A file passes if either matches.

Example (skipped: needs the Fashion-MNIST files, e.g. from Debian's ``dataset-fashion-mnist``):
    >>> ds = load_fashion_mnist()                       # doctest: +SKIP
    >>> ds.train.features.shape, ds.test.labels.shape   # doctest: +SKIP
    (torch.Size([60000, 1, 28, 28]), torch.Size([10000]))
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path

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
)

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "FASHION_MNIST_URL",
    "load_fashion_mnist",
    "parse_idx",
    "read_idx",
]

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
SYSTEM_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
SUBFOLDER = "fashion-mnist"

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"
FILES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

# md5 of the canonical .gz downloads (from the upstream README) ...
GZ_MD5 = {
    TRAIN_IMAGES: "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    TRAIN_LABELS: "25c81989df183df01b3e8a0aad5dffbe",
    TEST_IMAGES: "bef4ecab320f06d8554ea6380940ec79",
    TEST_LABELS: "bb300cfdad3c16e7a12a480ee83cd310",
}
# ... and of their decompressed content (what the Debian package's recompressed files hold).
RAW_MD5 = {
    TRAIN_IMAGES: "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    TRAIN_LABELS: "9018921c3c673c538a1fc5bad174d6f9",
    TEST_IMAGES: "8181f5470baa50b63fa0f6fddb340f0a",
    TEST_LABELS: "15d484375f8d13e6eb1aabb0c3f46965",
}

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
# Pixel mean / std of the 60k training images after scaling to [0, 1]
# (computed over all pixels: 0.286041, 0.353024).
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530

_IDX_UBYTE = 0x08


# --------------------------------------------------------------------------- IDX format


def parse_idx(data: bytes, *, expected_ndim: int, name: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an unsigned-byte IDX file into a uint8 array.

    Layout: two zero bytes, a dtype code (0x08 = ubyte, the only one supported), the
    number of dimensions, one big-endian uint32 per dimension, then the data.
    Raises ``ValueError`` naming ``name`` for any structural problem.

    Example:
        >>> parse_idx(bytes([0, 0, 8, 1, 0, 0, 0, 2, 7, 9]), expected_ndim=1).tolist()
        [7, 9]
    """
    if len(data) < 4:
        raise ValueError(f"{name}: not an IDX file (only {len(data)} bytes)")
    if data[0] != 0 or data[1] != 0:
        magic = int.from_bytes(data[:4], "big")
        raise ValueError(f"{name}: bad IDX magic number 0x{magic:08x} (must start with two zero bytes)")
    dtype_code, ndim = data[2], data[3]
    if dtype_code != _IDX_UBYTE:
        raise ValueError(f"{name}: unsupported IDX dtype code 0x{dtype_code:02x} (expected 0x08, unsigned byte)")
    if ndim != expected_ndim:
        raise ValueError(f"{name}: IDX file has {ndim} dimensions, expected {expected_ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: truncated IDX header")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise ValueError(
            f"{name}: IDX header says shape {dims} ({expected} bytes with header) "
            f"but the file holds {len(data)} bytes"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def _read_bytes(path: Path) -> tuple[bytes, bytes]:
    """(file bytes, content bytes): equal unless the file is gzipped."""
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw, raw
    try:
        return raw, gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: corrupt gzip file ({exc}); delete it and get it again") from exc


def read_idx(path: str | os.PathLike, *, expected_ndim: int) -> np.ndarray:
    """Read a (possibly gzipped) unsigned-byte IDX file into a uint8 array.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "labels-idx1-ubyte.gz"
        ...     _ = path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 9, 4])))
        ...     read_idx(path, expected_ndim=1).tolist()
        [7, 9, 4]
    """
    path = Path(path)
    return parse_idx(_read_bytes(path)[1], expected_ndim=expected_ndim, name=str(path))


def _verify(path: Path, stem: str, raw: bytes, content: bytes) -> None:
    if path.suffix == ".gz" and hashlib.md5(raw).hexdigest() == GZ_MD5[stem]:
        return
    actual = hashlib.md5(content).hexdigest()
    if actual != RAW_MD5[stem]:
        raise ValueError(f"{path}: checksum mismatch (md5 of the content {actual}, expected {RAW_MD5[stem]}): "
                         "delete it and get it again, or pass verify_checksums=False to use it anyway")


# --------------------------------------------------------------------------- locating / downloading


def _file_in(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _complete(folder: Path) -> dict[str, Path] | None:
    found = {stem: path for stem in FILES if (path := _file_in(folder, stem)) is not None}
    return found if len(found) == len(FILES) else None


def _candidates(root: Path) -> list[Path]:
    return [root, root / SUBFOLDER]


def _search_dirs(data_dir: str | os.PathLike | None) -> list[tuple[Path, str]]:
    """``(folder, origin)`` pairs searched, in order: the user's folder alone if one is named."""
    explicit = explicit_data_root(data_dir)
    if explicit is not None:
        root, how = explicit
        return [(d, how) for d in _candidates(root)]
    return [(SYSTEM_DATA_DIR, "system"), (cache_root() / SUBFOLDER, "cache")]


def _names() -> str:
    return ", ".join(f"{stem}[.gz]" for stem in FILES)


def _not_found(searched: list[Path]) -> DataNotFoundError:
    places = ", ".join(str(d) for d in searched)
    return DataNotFoundError(
        f"Fashion-MNIST not found: looked for {_names()} in {places}",
        "get it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu, installs it in "
        f"{SYSTEM_DATA_DIR}), or put the four files in a folder and pass --data-dir /path (data_dir=...) or "
        f"set LSTSD_DATA=/path, or when online pass --download (download=True, fetches from {FASHION_MNIST_URL})")


def _not_in_explicit(root: Path, how: str) -> DataNotFoundError:
    other = ("leave out --data-dir to use $LSTSD_DATA (when set) or" if how == "--data-dir"
             else "unset LSTSD_DATA to use")
    return DataNotFoundError(
        f"Fashion-MNIST is not in {root} (named by {how}): looked for {_names()} there and in {root / SUBFOLDER}",
        f"put the four files there, or pass --download to fetch them into it, or {other} the system copy "
        f"({SYSTEM_DATA_DIR}, `sudo apt-get install dataset-fashion-mnist`) or the download cache "
        f"({cache_root() / SUBFOLDER})")


def _locate(data_dir: str | os.PathLike | None, download: bool) -> tuple[dict[str, Path], str, Path]:
    """``(files by stem, origin, folder)``; downloads only with ``download``."""
    searched = _search_dirs(data_dir)
    for folder, origin in searched:
        if (found := _complete(folder)) is not None:
            return found, origin, folder
    explicit = explicit_data_root(data_dir)
    if not download:
        if explicit is not None:
            raise _not_in_explicit(*explicit)
        raise _not_found([folder for folder, _ in searched])
    target = explicit[0] if explicit is not None else cache_root() / SUBFOLDER
    for stem in FILES:
        if _file_in(target, stem) is None:
            url = FASHION_MNIST_URL + f"{stem}.gz"
            try:
                download_url(url, target / f"{stem}.gz", GZ_MD5[stem])
            except OSError as exc:
                raise download_failed(url, exc) from exc
    found = _complete(target)
    assert found is not None
    return found, "download", target


# --------------------------------------------------------------------------- loader


def _load_pair(images_path: Path, labels_path: Path, stem_images: str, stem_labels: str,
               verify_checksums: bool) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels from two IDX files, checked."""
    (img_raw, img_bytes), (lbl_raw, lbl_bytes) = _read_bytes(images_path), _read_bytes(labels_path)
    if verify_checksums:
        _verify(images_path, stem_images, img_raw, img_bytes)
        _verify(labels_path, stem_labels, lbl_raw, lbl_bytes)
    images = parse_idx(img_bytes, expected_ndim=3, name=str(images_path))
    labels = parse_idx(lbl_bytes, expected_ndim=1, name=str(labels_path))
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds {labels.shape[0]} labels"
        )
    if images.shape[1] != images.shape[2]:
        raise ValueError(f"{images_path}: images are {images.shape[1]}×{images.shape[2]}, expected square")
    if labels.size and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise ValueError(
            f"{labels_path}: label {int(labels.max())} out of range for {len(FASHION_MNIST_CLASSES)} classes"
        )
    return images, labels


def _to_split(images: np.ndarray, labels: np.ndarray) -> TensorSplit:
    x = torch.from_numpy(images).unsqueeze(1).float().div_(255.0)
    x.sub_(FASHION_MNIST_MEAN).div_(FASHION_MNIST_STD)
    return TensorSplit(x, torch.from_numpy(labels.astype(np.int64)))


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, *, download: bool = False,
                       verify_checksums: bool = True) -> DatasetSplits:
    """Load Fashion-MNIST as float32 ``N×1×28×28`` tensors normalised with the train mean/std.

    Args:
        data_dir: folder holding the four IDX files (directly or in ``fashion-mnist/``);
            searched first, see the module docstring for the full search order.
        download: if the files are found nowhere, download them into the cache.
        verify_checksums: check the files against the canonical md5s. Turn off only to
            read other IDX data in the same layout (e.g. small synthetic files).

    Raises:
        FileNotFoundError: (:class:`~lstsd.harness.errors.DataNotFoundError`) the files are not in
            the folder named by ``data_dir`` / ``$LSTSD_DATA``, or, when none is named, nowhere;
            the message lists the places searched and how to get the data.
        ValueError: a file is corrupt (bad checksum or IDX structure); the message names it.

    Example (skipped: needs the Fashion-MNIST files, downloaded when online):
        >>> ds = load_fashion_mnist(download=True)  # doctest: +SKIP
        >>> ds.num_classes, ds.image_size  # doctest: +SKIP
        (10, 28)
    """
    paths, origin, folder = _locate(data_dir, download)
    train_x, train_y = _load_pair(paths[TRAIN_IMAGES], paths[TRAIN_LABELS], TRAIN_IMAGES, TRAIN_LABELS,
                                  verify_checksums)
    test_x, test_y = _load_pair(paths[TEST_IMAGES], paths[TEST_LABELS], TEST_IMAGES, TEST_LABELS,
                                verify_checksums)
    if train_x.shape[1:] != test_x.shape[1:]:
        raise ValueError(
            f"train images are {train_x.shape[1:]} but test images are {test_x.shape[1:]} "
            f"({paths[TRAIN_IMAGES]}, {paths[TEST_IMAGES]})"
        )
    return DatasetSplits(
        name="fashion_mnist",
        train=_to_split(train_x, train_y),
        test=_to_split(test_x, test_y),
        val=None,
        num_classes=len(FASHION_MNIST_CLASSES),
        in_channels=1,
        image_size=int(train_x.shape[1]),
        classes=list(FASHION_MNIST_CLASSES),
        source=data_source("fashion_mnist", origin, folder, [train_x, train_y, test_x, test_y],
                           [paths[stem] for stem in FILES]),
    )
