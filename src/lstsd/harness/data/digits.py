"""scikit-learn's 8×8 handwritten digits (1,797 images, 10 classes): a tiny, offline data set.

It ships inside scikit-learn (no download), which makes it the harness's smoke-test data.
There is no official train/test split, so a stratified one is drawn with ``split_seed``.
That seed is deliberately separate from the run seed: the test set stays the same
across seeds and methods. ``source`` names scikit-learn's data file and a sha256 of the images
and labels (``data_dir`` and ``$LSTSD_DATA`` are not used).

Example:
    >>> ds = load_digits()
    >>> ds.train.features.shape, ds.test.features.shape
    (torch.Size([1438, 1, 8, 8]), torch.Size([359, 1, 8, 8]))
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .splits import DatasetSplits, TensorSplit, data_source, train_val_split

__all__ = ["DIGITS_MEAN", "DIGITS_STD", "load_digits"]

# Pixel mean / std of all 1,797 images after scaling the 0..16 intensities to [0, 1].
DIGITS_MEAN = 0.3053
DIGITS_STD = 0.3760


def load_digits(*, test_fraction: float = 0.2, split_seed: int = 0) -> DatasetSplits:
    """Load the digits as float32 ``N×1×8×8`` tensors with a stratified train/test split.

    Args:
        test_fraction: fraction of the 1,797 images held out as the test split, in (0, 1).
        split_seed: seed of the train/test split (independent of the run seed).

    Example:
        >>> load_digits(test_fraction=0.5).test.labels.shape
        torch.Size([898])
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("the digits data set needs scikit-learn: pip install -e '.[harness]' in a clone of "
                          "lstsd") from exc
    bunch = sk_load_digits()
    images = torch.from_numpy(np.asarray(bunch.images, dtype=np.float32)).unsqueeze(1)
    x = (images / 16.0 - DIGITS_MEAN) / DIGITS_STD
    y = torch.from_numpy(np.asarray(bunch.target, dtype=np.int64))
    train_idx, test_idx = train_val_split(y, test_fraction, split_seed)
    file = _sklearn_file()
    source = data_source("digits", "scikit-learn", file,
                         [np.asarray(bunch.images, dtype=np.uint8), np.asarray(bunch.target, dtype=np.int64)],
                         [file] if file else None)
    source["sklearn_version"] = _sklearn_version()
    source["split"] = {"test_fraction": test_fraction, "split_seed": split_seed}
    return DatasetSplits(
        name="digits",
        train=TensorSplit(x[train_idx], y[train_idx]),
        test=TensorSplit(x[test_idx], y[test_idx]),
        val=None,
        num_classes=10,
        in_channels=1,
        image_size=8,
        classes=[str(d) for d in range(10)],
        source=source,
    )


def _sklearn_file() -> str | None:
    """scikit-learn's ``digits.csv.gz``, where its ``load_digits`` reads the data (``None`` if elsewhere)."""
    try:
        import sklearn.datasets
        path = Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"
        return str(path) if path.is_file() else None
    except Exception:  # noqa: BLE001 - a record, never a reason to fail
        return None


def _sklearn_version() -> str:
    import sklearn
    return str(sklearn.__version__)
