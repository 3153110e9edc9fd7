"""Tests for lstsd.harness.data: readers (on small synthetic files), splits, augmentation, loader."""

from __future__ import annotations

import gzip
import hashlib
import io
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fakedata import cifar_members, write_cifar_tarball
from lstsd.harness.data import (
    DatasetSplits,
    IndexedTensorLoader,
    TensorSplit,
    available_datasets,
    cifar,
    fashion_mnist,
    load_cifar10,
    load_cifar100,
    load_dataset,
    load_digits,
    load_fashion_mnist,
    random_crop_flip,
    splits,
    stratified_subset,
    train_val_split,
)
from lstsd.harness.data.splits import download_url

SYSTEM_FMNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No user data dirs, an empty cache, and no system Fashion-MNIST unless a test asks."""
    monkeypatch.delenv("LSTSD_DATA", raising=False)
    monkeypatch.setenv("LSTSD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DATA_DIR", tmp_path / "no-system-copy")

    def no_network(*args, **kwargs):
        raise AssertionError("tests must not touch the network")

    monkeypatch.setattr(splits.urllib.request, "urlopen", no_network)


# --------------------------------------------------------------------------- Fashion-MNIST / IDX


def idx_bytes(array: np.ndarray, *, magic_prefix: bytes = b"\x00\x00", dtype_code: int = 8) -> bytes:
    header = magic_prefix + bytes([dtype_code, array.ndim])
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_gz(path: Path, payload: bytes) -> None:
    path.write_bytes(gzip.compress(payload))


def make_fashion(folder: Path, n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": (np.arange(n_train) + seed) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3 + seed) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        write_gz(folder / f"{stem}.gz", idx_bytes(array))
    return arrays


def test_idx_round_trip(tmp_path):
    arrays = make_fashion(tmp_path / "fm")
    ds = load_fashion_mnist(tmp_path / "fm", verify_checksums=False)
    assert isinstance(ds, DatasetSplits)
    assert (ds.name, ds.num_classes, ds.in_channels, ds.image_size, ds.val) == ("fashion_mnist", 10, 1, 28, None)
    assert ds.train.features.shape == (20, 1, 28, 28) and ds.train.features.dtype == torch.float32
    assert ds.test.features.shape == (10, 1, 28, 28)
    assert ds.train.labels.dtype == torch.int64
    assert ds.train.labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()
    assert ds.test.labels.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    raw = ds.test.features * fashion_mnist.FASHION_MNIST_STD + fashion_mnist.FASHION_MNIST_MEAN
    assert torch.equal((raw * 255).round().to(torch.uint8)[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"]))


def test_fashion_search_order(tmp_path, monkeypatch):
    make_fashion(tmp_path / "explicit", seed=1)
    make_fashion(tmp_path / "env" / "fashion-mnist", seed=2)  # the subfolder form
    monkeypatch.setenv("LSTSD_DATA", str(tmp_path / "env"))
    assert load_fashion_mnist(verify_checksums=False).train.labels[0] == 2
    assert load_fashion_mnist(tmp_path / "explicit", verify_checksums=False).train.labels[0] == 1
    # a folder named explicitly is the only place looked at: no silent fall-back to $LSTSD_DATA or the system copy
    with pytest.raises(FileNotFoundError, match="not in .*empty \\(named by --data-dir\\)"):
        load_fashion_mnist(tmp_path / "empty", verify_checksums=False)
    monkeypatch.setenv("LSTSD_DATA", str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="named by \\$LSTSD_DATA.*unset LSTSD_DATA"):
        load_fashion_mnist(verify_checksums=False)


@pytest.mark.parametrize(
    "stem, payload, message",
    [
        ("train-images-idx3-ubyte", idx_bytes(np.zeros((20, 28, 28)), magic_prefix=b"\x01\x00"), "magic"),
        ("train-images-idx3-ubyte", idx_bytes(np.zeros((20, 28, 28)), dtype_code=0x0D), "dtype code"),
        ("train-images-idx3-ubyte", idx_bytes(np.zeros((20, 784))), "dimensions"),
        ("train-images-idx3-ubyte", idx_bytes(np.zeros((20, 28, 28)))[:-5], "bytes"),
        ("train-labels-idx1-ubyte", idx_bytes(np.zeros(19)), "19 labels"),
        ("t10k-labels-idx1-ubyte", idx_bytes(np.full(10, 10)), "out of range"),
    ],
)
def test_idx_structure_errors(tmp_path, stem, payload, message):
    make_fashion(tmp_path)
    write_gz(tmp_path / f"{stem}.gz", payload)
    with pytest.raises(ValueError, match=message) as info:
        load_fashion_mnist(tmp_path, verify_checksums=False)
    assert stem in str(info.value)


def test_fashion_missing_everywhere(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_fashion_mnist(tmp_path / "nowhere")
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "LSTSD_DATA" in message and "--data-dir" in message and "--download" in message
    for place in (tmp_path / "nowhere", tmp_path / "no-system-copy", tmp_path / "cache" / "fashion-mnist"):
        assert str(place) in message


def _patch_md5s(monkeypatch, folder: Path) -> None:
    gz = {s: hashlib.md5((folder / f"{s}.gz").read_bytes()).hexdigest() for s in fashion_mnist.FILES}
    raw = {s: hashlib.md5(gzip.decompress((folder / f"{s}.gz").read_bytes())).hexdigest() for s in fashion_mnist.FILES}
    monkeypatch.setattr(fashion_mnist, "GZ_MD5", gz)
    monkeypatch.setattr(fashion_mnist, "RAW_MD5", raw)


def test_fashion_checksum_catches_tampering(tmp_path, monkeypatch):
    arrays = make_fashion(tmp_path)
    _patch_md5s(monkeypatch, tmp_path)
    assert len(load_fashion_mnist(tmp_path).train) == 20  # pristine files pass
    labels = arrays["train-labels-idx1-ubyte"].copy()
    labels[0] = (labels[0] + 1) % 10  # still a structurally valid file
    write_gz(tmp_path / "train-labels-idx1-ubyte.gz", idx_bytes(labels))
    with pytest.raises(ValueError, match="checksum mismatch") as info:
        load_fashion_mnist(tmp_path)
    assert "train-labels-idx1-ubyte" in str(info.value)
    assert load_fashion_mnist(tmp_path, verify_checksums=False).train.labels[0] == labels[0]


def test_fashion_accepts_recompressed_files(tmp_path, monkeypatch):
    """Like the Debian package: same content, different .gz bytes -> passes via the content md5."""
    make_fashion(tmp_path)
    _patch_md5s(monkeypatch, tmp_path)
    monkeypatch.setattr(fashion_mnist, "GZ_MD5", {s: "0" * 32 for s in fashion_mnist.FILES})
    assert len(load_fashion_mnist(tmp_path).test) == 10


class FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_fashion_download_mocked(tmp_path, monkeypatch):
    source = tmp_path / "server"
    make_fashion(source)
    _patch_md5s(monkeypatch, source)
    requested = []

    def fake_urlopen(url, timeout=None):
        requested.append(url)
        return FakeResponse((source / url.rsplit("/", 1)[1]).read_bytes())

    monkeypatch.setattr(splits.urllib.request, "urlopen", fake_urlopen)
    with pytest.raises(FileNotFoundError):
        load_fashion_mnist()  # download=False never downloads
    ds = load_fashion_mnist(download=True)
    assert len(ds.train) == 20 and len(requested) == 4
    assert all(u.startswith(fashion_mnist.FASHION_MNIST_URL) for u in requested)
    cache = tmp_path / "cache" / "fashion-mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(f"{s}.gz" for s in fashion_mnist.FILES)
    load_fashion_mnist(download=True)  # now found in the cache
    assert len(requested) == 4


def test_download_url_verifies_and_cleans_up(tmp_path, monkeypatch):
    body = b"hello" * 1000
    monkeypatch.setattr(splits.urllib.request, "urlopen", lambda url, timeout=None: FakeResponse(body))
    dest = tmp_path / "dl" / "file.bin"
    with pytest.raises(ValueError, match="md5"):
        download_url("http://example.invalid/file.bin", dest, "0" * 32)
    assert list(dest.parent.iterdir()) == []  # no partial file, no half-named file
    download_url("http://example.invalid/file.bin", dest, hashlib.md5(body).hexdigest())
    assert dest.read_bytes() == body and [p.name for p in dest.parent.iterdir()] == ["file.bin"]

    def offline(url, timeout=None):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(splits.urllib.request, "urlopen", offline)
    with pytest.raises(OSError, match="online"):
        download_url("http://example.invalid/other.bin", tmp_path / "dl" / "other.bin")
    assert [p.name for p in dest.parent.iterdir()] == ["file.bin"]


@pytest.mark.skipif(not SYSTEM_FMNIST.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_real_fashion_mnist():
    ds = load_fashion_mnist(SYSTEM_FMNIST, verify_checksums=True)
    assert ds.train.features.shape == (60000, 1, 28, 28) and ds.test.features.shape == (10000, 1, 28, 28)
    assert ds.num_classes == 10 and len(ds.classes) == 10
    assert torch.bincount(ds.train.labels).tolist() == [6000] * 10
    assert torch.bincount(ds.test.labels).tolist() == [1000] * 10
    assert abs(ds.train.features.mean().item()) < 1e-3 and abs(ds.train.features.std().item() - 1) < 1e-3


# --------------------------------------------------------------------------- CIFAR


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_cifar_tarball_round_trip(tmp_path, kind):
    members, train_x, train_y, test_x, test_y = cifar_members(kind)
    tarname = "cifar-10-python.tar.gz" if kind == "cifar10" else "cifar-100-python.tar.gz"
    write_cifar_tarball(tmp_path / tarname, kind, members)
    ds = load_dataset(kind, data_dir=tmp_path, verify_checksums=False)
    spec = cifar.CIFAR10 if kind == "cifar10" else cifar.CIFAR100
    assert (ds.name, ds.num_classes, ds.in_channels, ds.image_size) == (kind, spec.num_classes, 3, 32)
    assert ds.train.features.shape == (20, 3, 32, 32) and ds.test.features.shape == (10, 3, 32, 32)
    assert ds.train.labels.tolist() == train_y.tolist() and ds.test.labels.tolist() == test_y.tolist()
    for split, raw in ((ds.train, train_x), (ds.test, test_x)):
        mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
        std = torch.tensor(spec.std).view(1, 3, 1, 1)
        expected = torch.from_numpy(raw).view(-1, 3, 32, 32).float() / 255  # rows are CHW
        torch.testing.assert_close(split.features, (expected - mean) / std)
        assert torch.equal(((split.features * std + mean) * 255).round().to(torch.uint8),
                           torch.from_numpy(raw).view(-1, 3, 32, 32))
    assert ds.classes[:2] == (["airplane", "automobile"] if kind == "cifar10" else ["class00", "class01"])


def test_cifar_extracted_folder(tmp_path):
    members, train_x, train_y, _, _ = cifar_members("cifar10")
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name, data in members.items():
        (folder / name).write_bytes(data)
    from_parent = load_cifar10(tmp_path)  # the extracted folder inside data_dir
    from_folder = load_cifar10(folder)  # data_dir is the extracted folder itself
    assert from_parent.train.labels.tolist() == train_y.tolist()
    assert torch.equal(from_parent.train.features, from_folder.train.features)


def test_cifar_corrupt_archives(tmp_path):
    members, *_ = cifar_members("cifar10")
    good = tmp_path / "good.tar.gz"
    write_cifar_tarball(good, "cifar10", members)
    for name, data in (("truncated", good.read_bytes()[: good.stat().st_size // 2]), ("garbage", b"not a tarball")):
        (tmp_path / name).mkdir()
        bad = tmp_path / name / "cifar-10-python.tar.gz"
        bad.write_bytes(data)
        with pytest.raises(ValueError, match="delete it and download it again") as info:
            load_cifar10(bad.parent, verify_checksums=False)
        assert str(bad) in str(info.value)
    (tmp_path / "missing").mkdir()
    del members["data_batch_5"]
    write_cifar_tarball(tmp_path / "missing" / "cifar-10-python.tar.gz", "cifar10", members)
    with pytest.raises(ValueError, match="data_batch_5"):
        load_cifar10(tmp_path / "missing", verify_checksums=False)


def test_cifar_checksum_and_missing(tmp_path):
    members, *_ = cifar_members("cifar100")
    write_cifar_tarball(tmp_path / "cifar-100-python.tar.gz", "cifar100", members)
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_cifar100(tmp_path)  # a small home-made archive is not the official one
    with pytest.raises(FileNotFoundError) as info:
        load_cifar10(tmp_path / "does-not-exist")
    message = str(info.value)
    assert str(tmp_path / "does-not-exist") in message and str(tmp_path / "cache" / "cifar") in message
    assert "--download" in message and "LSTSD_DATA" in message


# --------------------------------------------------------------------------- digits, load_dataset


def test_digits_shapes():
    ds = load_digits()
    assert ds.train.features.shape == (1438, 1, 8, 8) and ds.test.features.shape == (359, 1, 8, 8)
    assert ds.train.features.dtype == torch.float32 and ds.num_classes == 10 and ds.image_size == 8
    assert abs(ds.train.features.mean().item()) < 0.05 and abs(ds.train.features.std().item() - 1) < 0.05
    assert torch.bincount(ds.test.labels).min() >= 34  # stratified: about 36 per class


def test_load_dataset_subset_then_val():
    assert available_datasets() == ["fashion_mnist", "cifar10", "cifar100", "digits"]
    full = load_dataset("digits")
    ds = load_dataset("digits", train_subset=500, val_fraction=0.2, seed=7)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (400, 100, 359)
    sub = stratified_subset(full.train.labels, 500, seed=7)
    tr, va = train_val_split(full.train.labels[sub], 0.2, seed=7)
    assert torch.equal(ds.train.features, full.train.features[sub][tr])
    assert torch.equal(ds.val.labels, full.train.labels[sub][va])
    again = load_dataset("Digits", train_subset=500, val_fraction=0.2, seed=7)
    assert torch.equal(again.val.features, ds.val.features)
    assert not torch.equal(load_dataset("digits", train_subset=500, seed=8).train.features,
                           load_dataset("digits", train_subset=500, seed=7).train.features)
    with pytest.raises(ValueError, match="unknown data set"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match="val_fraction"):
        load_dataset("digits", val_fraction=1.0)


def test_load_dataset_fashion_kwargs(tmp_path):
    make_fashion(tmp_path, n_train=40)
    ds = load_dataset("fashion-mnist", data_dir=tmp_path, train_subset=0.5, val_fraction=0.5, verify_checksums=False)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (10, 10, 10)
    with pytest.raises(ValueError, match="checksum"):
        load_dataset("fashion_mnist", data_dir=tmp_path)


# --------------------------------------------------------------------------- subsets and splits


def test_stratified_subset_proportions_and_determinism():
    shuffle = torch.randperm(1000, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0] * 500 + [1] * 300 + [2] * 200)[shuffle]
    idx = stratified_subset(labels, 0.1, seed=3)
    assert idx.dtype == torch.int64 and torch.equal(idx, idx.sort().values) and idx.unique().numel() == 100
    assert torch.bincount(labels[idx]).tolist() == [50, 30, 20]
    idx37 = stratified_subset(labels, 37, seed=3)
    counts = torch.bincount(labels[idx37], minlength=3).double()
    assert counts.sum() == 37 and torch.all((counts - torch.tensor([18.5, 11.1, 7.4])).abs() < 1)
    assert torch.equal(stratified_subset(labels, 37, seed=3), idx37)
    assert not torch.equal(stratified_subset(labels, 37, seed=4), idx37)
    assert torch.equal(stratified_subset(labels, 1.0, seed=0), torch.arange(1000))
    rare = torch.tensor([0] * 98 + [1] * 2)
    assert set(rare[stratified_subset(rare, 10, seed=0)].tolist()) == {0, 1}  # every class kept


@pytest.mark.parametrize("size", [0, 1001, 0.0, 1.5, 2, -3])
def test_stratified_subset_errors(size):
    labels = torch.arange(1000) % 3
    with pytest.raises(ValueError):
        stratified_subset(labels, size, seed=0)


def test_train_val_split_disjoint_and_covering():
    labels = torch.arange(103) % 4
    train, val = train_val_split(labels, 0.25, seed=1)
    assert len(val) == 26 and len(train) == 77
    assert torch.equal(torch.cat([train, val]).sort().values, torch.arange(103))
    assert set(train.tolist()).isdisjoint(val.tolist())
    assert torch.bincount(labels[val]).tolist() in ([7, 7, 6, 6], [7, 6, 7, 6], [6, 7, 7, 6], [7, 6, 6, 7],
                                                    [6, 7, 6, 7], [6, 6, 7, 7])
    assert all(torch.equal(a, b) for a, b in zip(train_val_split(labels, 0.25, seed=1), (train, val)))
    t0, v0 = train_val_split(labels, 0.0, seed=1)
    assert torch.equal(t0, torch.arange(103)) and v0.numel() == 0
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split(labels, 1.0, seed=0)
    with pytest.raises(ValueError, match="no training sample"):
        train_val_split(torch.tensor([0] * 10 + [1]), 0.3, seed=0)


def test_tensor_split_validation():
    with pytest.raises(ValueError, match="int64"):
        TensorSplit(torch.zeros(3, 2), torch.zeros(3, dtype=torch.int32))
    with pytest.raises(ValueError, match="first dimension"):
        TensorSplit({"input_ids": torch.zeros(3, 2), "attention_mask": torch.zeros(4, 2)}, torch.zeros(3).long())


# --------------------------------------------------------------------------- augmentation


def distinct_images(n: int, c: int = 2, h: int = 6, w: int = 6) -> torch.Tensor:
    return torch.arange(1, n * c * h * w + 1, dtype=torch.float32).view(n, c, h, w)  # no zeros, all distinct


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_random_crop_flip_is_a_crop_of_the_padded_input(pad_mode):
    x, p = distinct_images(80), 2
    out = random_crop_flip(x, padding=p, pad_mode=pad_mode, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    padded = F.pad(x, (p,) * 4, mode=pad_mode)
    seen_offsets, seen_flips = set(), set()
    for i in range(len(x)):
        matches = [(dy, dx, fl) for dy in range(2 * p + 1) for dx in range(2 * p + 1) for fl in (False, True)
                   if torch.equal(out[i], (lambda c: c.flip(-1) if fl else c)(padded[i, :, dy:dy + 6, dx:dx + 6]))]
        assert len(matches) == 1, f"image {i} is not a crop of its padded input"
        seen_offsets.update(matches[0][:2])
        seen_flips.add(matches[0][2])
    assert seen_offsets == set(range(2 * p + 1)) and seen_flips == {False, True}


def test_random_crop_flip_flip_rate_and_reproducibility():
    x = distinct_images(2000, c=1, h=2, w=2)
    out = random_crop_flip(x, padding=0, generator=torch.Generator().manual_seed(1))
    flipped = torch.all(out == x.flip(-1), dim=(1, 2, 3))
    assert torch.all(flipped | torch.all(out == x, dim=(1, 2, 3)))
    assert 0.45 <= flipped.float().mean().item() <= 0.55
    assert torch.equal(random_crop_flip(x, padding=0, flip=False), x)
    y = distinct_images(64)
    a = random_crop_flip(y, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, random_crop_flip(y, generator=torch.Generator().manual_seed(5)))
    assert not torch.equal(a, random_crop_flip(y, generator=torch.Generator().manual_seed(6)))


def test_random_crop_flip_channels_last_and_errors():
    x = distinct_images(16, c=3, h=8, w=8)
    out = random_crop_flip(x.contiguous(memory_format=torch.channels_last), padding=3,
                           generator=torch.Generator().manual_seed(2))
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out, random_crop_flip(x, padding=3, generator=torch.Generator().manual_seed(2)))
    with pytest.raises(ValueError):
        random_crop_flip(x[0])
    with pytest.raises(ValueError):
        random_crop_flip(x, padding=-1)
    with pytest.raises(ValueError):
        random_crop_flip(x, padding=8, pad_mode="reflect")


# --------------------------------------------------------------------------- loader


def toy_split(n: int = 23) -> TensorSplit:
    return TensorSplit(torch.randn(n, 1, 4, 4, generator=torch.Generator().manual_seed(0)), torch.arange(n) % 3)


def collect(loader: IndexedTensorLoader, epoch: int | None = None):
    if epoch is not None:
        loader.set_epoch(epoch)
    return [(x.clone(), y.clone(), i.clone()) for x, y, i in loader]


def test_loader_each_index_once_and_lengths():
    split = toy_split()
    loader = IndexedTensorLoader(split, 5, seed=1)
    batches = collect(loader)
    assert len(loader) == len(batches) == 5 and [len(b[2]) for b in batches] == [5, 5, 5, 5, 3]
    index = torch.cat([b[2] for b in batches])
    assert index.dtype == torch.int64 and torch.equal(index.sort().values, torch.arange(23))
    assert not torch.equal(index, torch.arange(23))  # shuffled
    for x, y, i in batches:
        assert torch.equal(x, split.features[i]) and torch.equal(y, split.labels[i])
    dropping = IndexedTensorLoader(split, 5, drop_last=True, seed=1)
    kept = collect(dropping)
    assert len(dropping) == len(kept) == 4 and all(len(b[2]) == 5 for b in kept)
    assert torch.cat([b[2] for b in kept]).unique().numel() == 20
    ordered = collect(IndexedTensorLoader(split, 10, shuffle=False))
    assert torch.equal(torch.cat([b[2] for b in ordered]), torch.arange(23))


def test_loader_stateless_by_epoch():
    split = toy_split(40)
    augment = lambda x, g: random_crop_flip(x, padding=1, generator=g)  # noqa: E731
    a = IndexedTensorLoader(split, 8, seed=3, transform=augment)
    b = IndexedTensorLoader(split, 8, seed=3, transform=augment)
    run = [collect(a, epoch) for epoch in range(3)]
    resumed = collect(b, 2)  # a fresh loader jumping straight to epoch 2
    assert all(torch.equal(p, q) for bp, bq in zip(run[2], resumed) for p, q in zip(bp, bq))
    order = [torch.cat([b[2] for b in epoch]) for epoch in run]
    assert not torch.equal(order[0], order[1]) and not torch.equal(order[1], order[2])
    assert torch.equal(torch.cat([b[2] for b in collect(a)]), order[2])  # no set_epoch: last epoch again
    other_seed = IndexedTensorLoader(split, 8, seed=4, transform=augment)
    assert not torch.equal(torch.cat([b[2] for b in collect(other_seed, 2)]), order[2])
    x, _, index = run[0][0]
    assert not torch.equal(x, split.features[index])  # the transform was applied
    fixed = [IndexedTensorLoader(split, 40, shuffle=False, seed=3, transform=augment) for _ in range(2)]
    aug = [collect(fixed[0], epoch)[0][0] for epoch in (0, 1)]
    assert not torch.equal(aug[0], aug[1])  # augmentation changes with the epoch ...
    assert torch.equal(collect(fixed[1], 1)[0][0], aug[1])  # ... and is reproducible from (seed, epoch)


def test_loader_dict_features_and_validation():
    n = 11
    ids = torch.arange(n).unsqueeze(1) * 10 + torch.arange(4)
    mask = (torch.arange(4) < (torch.arange(n) % 4 + 1).unsqueeze(1)).long()
    split = TensorSplit({"input_ids": ids, "attention_mask": mask}, torch.arange(n) % 2)
    seen = []
    for x, y, index in IndexedTensorLoader(split, 4, seed=0):
        assert torch.equal(x["input_ids"][:, 0] // 10, index)
        assert torch.equal(x["attention_mask"], mask[index]) and torch.equal(y, index % 2)
        seen.append(index)
    assert torch.equal(torch.cat(seen).sort().values, torch.arange(n))
    with pytest.raises(ValueError, match="tensor features only"):
        IndexedTensorLoader(split, 4, transform=lambda x, g: x)
    with pytest.raises(ValueError, match="batch_size"):
        IndexedTensorLoader(split, 0)
    with pytest.raises(ValueError, match="empty"):
        IndexedTensorLoader(TensorSplit(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64)), 4)
    bad = TensorSplit({"a": torch.zeros(3), "b": torch.zeros(3)}, torch.zeros(3, dtype=torch.int64))
    bad.features["b"] = torch.zeros(5)  # mutated after construction
    with pytest.raises(ValueError, match="rows"):
        IndexedTensorLoader(bad, 2)


def test_loader_device_and_memory_format():
    split = toy_split(9)
    loader = IndexedTensorLoader(split, 4, device="cpu", memory_format=torch.channels_last,
                                 transform=lambda x, g: random_crop_flip(x, padding=1, generator=g))
    for x, y, index in loader:
        assert x.device.type == y.device.type == index.device.type == "cpu"
        assert x.is_contiguous(memory_format=torch.channels_last)
