"""Small data files in the real formats, written by tests (no downloads)."""

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from lstsd.harness.data import cifar


def _pickle(obj) -> bytes:
    return pickle.dumps(obj, protocol=2)


def cifar_members(kind: str, n_train: int = 20, n_test: int = 10, seed: int = 0):
    """(members dict name -> bytes, train data, train labels, test data, test labels) in the real format."""
    rng = np.random.default_rng(seed)
    num_classes = 10 if kind == "cifar10" else 100
    train_x = rng.integers(0, 256, (n_train, 3072), dtype=np.uint8)
    test_x = rng.integers(0, 256, (n_test, 3072), dtype=np.uint8)
    train_y = rng.integers(0, num_classes, n_train).tolist()
    test_y = rng.integers(0, num_classes, n_test).tolist()
    members = {}
    if kind == "cifar10":
        for b, chunk in enumerate(np.array_split(np.arange(n_train), 5), start=1):
            members[f"data_batch_{b}"] = _pickle({
                b"batch_label": f"training batch {b} of 5".encode(), b"data": train_x[chunk],
                b"labels": [train_y[i] for i in chunk], b"filenames": [b"x.png"] * len(chunk)})
        members["test_batch"] = _pickle({b"batch_label": b"testing batch 1 of 1", b"data": test_x,
                                         b"labels": test_y, b"filenames": [b"x.png"] * n_test})
        members["batches.meta"] = _pickle({b"label_names": [n.encode() for n in cifar.CIFAR10_CLASSES]})
    else:
        for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
            members[name] = _pickle({b"batch_label": name.encode(), b"data": x, b"fine_labels": y,
                                     b"coarse_labels": [v // 5 for v in y], b"filenames": [b"x.png"] * len(y)})
        members["meta"] = _pickle({b"fine_label_names": [f"class{i:02d}".encode() for i in range(100)],
                                   b"coarse_label_names": [f"super{i:02d}".encode() for i in range(20)]})
    return members, train_x, np.array(train_y), test_x, np.array(test_y)


def write_cifar_tarball(path: Path, kind: str, members: dict[str, bytes]) -> None:
    folder = "cifar-10-batches-py" if kind == "cifar10" else "cifar-100-python"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
