"""Datasets: decoding and its checks, the cache, the fixed splits, bad input, augmentation and the batch loader."""

from __future__ import annotations

import gzip
import hashlib
import io
import itertools
import math
import shutil
import struct
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import real_data_root, requires_real_data
from dnic_utils import data, exploration
from dnic_utils.data import DATASETS, Augment, BatchLoader, RawData, channel_stats, dataset_info, load_raw, load_splits
from dnic_utils.data.sources import read_idx
from dnic_utils.errors import DnicError

IDX_NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

# ../shared/data/README.md: images, per-class counts and mean pixel /255 of each split.
REAL = {
    "mnist": {
        "kind": "idx", "lossy": False, "shape": (1, 28, 28),
        "train": (60_000, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949], [0.1307]),
        "test": (10_000, [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009], [0.1325]),
    },
    "fashion_mnist": {
        "kind": "idx", "lossy": False, "shape": (1, 28, 28),
        "train": (60_000, [6000] * 10, [0.2860]),
        "test": (10_000, [1000] * 10, [0.2868]),
    },
    "cifar10": {
        "kind": "CIFAR10-JPEG", "lossy": True, "shape": (3, 32, 32),
        "train": (50_000, [5000] * 10, [0.4913, 0.4821, 0.4465]),
        "test": (10_000, [1000] * 10, [0.4941, 0.4851, 0.4504]),
    },
}

FIXTURE_TRAIN_PER_CLASS, FIXTURE_TEST_PER_CLASS = 510, 10


def channel_means(x: torch.Tensor) -> list[float]:
    """Mean pixel /255 per channel, summed exactly in int64 chunk by chunk (independent of channel_stats)."""
    total = torch.zeros(x.shape[1], dtype=torch.int64)
    for start in range(0, len(x), 5000):
        total += x[start : start + 5000].to(torch.int64).sum(dim=(0, 2, 3))
    return (total.double() / (x.shape[0] * x.shape[2] * x.shape[3] * 255)).tolist()


def check_raw_shapes(raw: RawData, name: str) -> None:
    info = dataset_info(name)
    for x, y in ((raw.train_x, raw.train_y), (raw.test_x, raw.test_y)):
        assert x.dtype == torch.uint8
        assert x.ndim == 4 and tuple(x.shape[1:]) == (info.channels, info.size, info.size)
        assert y.dtype == torch.int64 and y.shape == (len(x),)
        assert int(y.min()) >= 0 and int(y.max()) < len(info.classes)


# --------------------------------------------------------------------------------------------------------------
# (a) The real datasets against the table of the shared README


@requires_real_data
@pytest.mark.parametrize("name", list(REAL))
def test_real_data_matches_readme_table(name: str) -> None:
    expected = REAL[name]
    raw = load_raw(name, real_data_root())
    check_raw_shapes(raw, name)
    assert tuple(raw.train_x.shape[1:]) == expected["shape"]
    for split, x, y in (("train", raw.train_x, raw.train_y), ("test", raw.test_x, raw.test_y)):
        images, counts, means = expected[split]
        assert len(x) == images, split
        assert torch.bincount(y, minlength=10).tolist() == counts, split
        assert channel_means(x) == pytest.approx(means, abs=5e-4), split
    assert raw.source["kind"] == expected["kind"]
    assert raw.source["lossy"] is expected["lossy"]
    assert len(raw.source["sha256"]) == 64


@requires_real_data
def test_real_cifar_title_names_the_jpeg_copy() -> None:
    raw = load_raw("cifar10", real_data_root())
    assert data.dataset_title(dataset_info("cifar10"), raw.source) == "CIFAR-10 (JPEG q75 copy)"


# --------------------------------------------------------------------------------------------------------------
# (b) The shipped fixture root: shapes, provenance and the cache


def fixture_files(root: Path, name: str) -> list[Path]:
    if name == "cifar10":
        return [root / "CIFAR10-JPEG" / "cifar10-tiny.tar.gz"]
    return [root / dataset_info(name).folder / "raw" / f for f in IDX_NAMES]


@pytest.mark.parametrize("name", list(DATASETS))
def test_fixture_load_raw(fixture_data: Path, name: str) -> None:
    raw = load_raw(name, fixture_data)
    check_raw_shapes(raw, name)
    assert len(raw.train_y) == 10 * FIXTURE_TRAIN_PER_CLASS and len(raw.test_y) == 10 * FIXTURE_TEST_PER_CLASS
    assert torch.bincount(raw.train_y, minlength=10).tolist() == [FIXTURE_TRAIN_PER_CLASS] * 10
    assert torch.bincount(raw.test_y, minlength=10).tolist() == [FIXTURE_TEST_PER_CLASS] * 10
    assert raw.train_x.float().std() > 0  # not a blank image set
    h = hashlib.sha256()
    for path in fixture_files(fixture_data, name):
        h.update(path.read_bytes())
    assert raw.source["sha256"] == h.hexdigest()
    assert raw.source["kind"] == ("CIFAR10-JPEG" if name == "cifar10" else "idx")
    assert raw.source["lossy"] is (name == "cifar10")
    assert fixture_data / raw.source["path"] == fixture_files(fixture_data, name)[0].parent  # relative: no machine paths
    assert raw.source["root"] == "data_dir parameter"


def test_fixture_images_of_a_class_share_their_template(fixture_data: Path) -> None:
    """Sanity check of the fixture itself: classes differ more from each other than within themselves."""
    raw = load_raw("mnist", fixture_data)
    x = raw.train_x.float().flatten(1)
    centroids = torch.stack([x[raw.train_y == c].mean(0) for c in range(10)])
    nearest = torch.cdist(x, centroids).argmin(1)
    assert (nearest == raw.train_y).float().mean() > 0.9


@pytest.mark.parametrize("name, decoder", [("mnist", "_from_idx"), ("cifar10", "_from_jpeg_tar")])
def test_second_load_comes_from_the_cache(fixture_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, decoder: str) -> None:
    monkeypatch.setenv("DNIC_CACHE_DIR", str(tmp_path / "cache"))
    first = load_raw(name, fixture_root)
    cached = tmp_path / "cache" / "datasets" / f"{name}-{first.source['sha256'][:16]}.pt"
    assert cached.is_file()

    def no_decoding(*args, **kwargs):
        raise AssertionError("the second load decoded the source again instead of reading the cache")

    monkeypatch.setattr(f"dnic_utils.data.sources.{decoder}", no_decoding)
    second = load_raw(name, fixture_root)
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.train_y, second.train_y)
    assert torch.equal(first.test_x, second.test_x) and torch.equal(first.test_y, second.test_y)
    assert second.source == first.source


def test_damaged_cache_is_decoded_again(fixture_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DNIC_CACHE_DIR", str(tmp_path / "cache"))
    first = load_raw("mnist", fixture_root)
    cached = tmp_path / "cache" / "datasets" / f"mnist-{first.source['sha256'][:16]}.pt"
    cached.write_bytes(b"not a torch file")
    again = load_raw("mnist", fixture_root)
    assert torch.equal(first.train_x, again.train_x)
    assert torch.equal(torch.load(cached, weights_only=True)["train_y"], first.train_y)  # rewritten


# --------------------------------------------------------------------------------------------------------------
# (c) load_splits: a fixed, stratified validation split; subsets; statistics of the train split


def indexed_raw(train_counts: list[int], test_counts: list[int]) -> RawData:
    """Grey 28×28 images whose first two pixels encode their own index, so splits reveal which images they took."""

    def make(counts: list[int], offset: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.tensor(np.random.RandomState(offset).permutation(np.repeat(np.arange(10), counts)), dtype=torch.int64)
        idx = torch.arange(len(labels)) + offset
        x = torch.randint(0, 256, (len(labels), 1, 28, 28), generator=torch.Generator().manual_seed(offset), dtype=torch.uint8)
        x[:, 0, 0, 0], x[:, 0, 0, 1] = (idx // 256).to(torch.uint8), (idx % 256).to(torch.uint8)
        return x, labels

    train_x, train_y = make(train_counts, 0)
    test_x, test_y = make(test_counts, 40_000)
    return RawData(train_x, train_y, test_x, test_y, {"kind": "synthetic", "path": None, "lossy": False, "sha256": None})


def ids(x: torch.Tensor) -> list[int]:
    return (x[:, 0, 0, 0].long() * 256 + x[:, 0, 0, 1].long()).tolist()


TRAIN_COUNTS = [100 + 37 * c for c in range(10)]  # imbalanced, so stratification is visible
TEST_COUNTS = [30 + 3 * c for c in range(10)]


@pytest.fixture
def synthetic(monkeypatch: pytest.MonkeyPatch) -> RawData:
    raw = indexed_raw(TRAIN_COUNTS, TEST_COUNTS)
    monkeypatch.setattr("dnic_utils.data.splits.load_raw", lambda name, root=None: raw)
    return raw


def assert_stratified(labels: torch.Tensor, size: int, population: torch.Tensor) -> None:
    """Each class within one image of its proportional share of `size`."""
    counts = torch.bincount(labels, minlength=10).double()
    expected = torch.bincount(population, minlength=10).double() * size / len(population)
    assert (counts - expected).abs().max() <= 1.0, (counts.tolist(), expected.tolist())


def test_validation_split_is_disjoint_stratified_and_fixed(synthetic: RawData) -> None:
    splits = load_splits("mnist", val_size=400)
    train_ids, val_ids = ids(splits.train_x), ids(splits.val_x)
    assert len(val_ids) == 400 and len(train_ids) == len(synthetic.train_y) - 400
    assert not set(train_ids) & set(val_ids)
    assert set(train_ids) | set(val_ids) == set(range(len(synthetic.train_y)))
    assert torch.equal(splits.train_y, synthetic.train_y[train_ids])  # labels travel with their images
    assert torch.equal(splits.val_y, synthetic.train_y[val_ids])
    assert_stratified(splits.val_y, 400, synthetic.train_y)
    again = load_splits("mnist", val_size=400)
    assert ids(again.val_x) == val_ids and ids(again.train_x) == train_ids


def test_subsets_have_the_requested_size_and_come_from_their_split(synthetic: RawData) -> None:
    full = load_splits("mnist", val_size=400)
    splits = load_splits("mnist", train_size=500, val_size=400, test_size=120)
    assert splits.sizes() == {"train": 500, "val": 400, "test": 120}
    assert ids(splits.val_x) == ids(full.val_x)  # the validation split does not depend on the subset
    assert set(ids(splits.train_x)) <= set(ids(full.train_x))
    assert set(ids(splits.test_x)) <= set(range(40_000, 40_000 + len(synthetic.test_y)))
    assert_stratified(splits.train_y, 500, full.train_y)
    assert_stratified(splits.test_y, 120, synthetic.test_y)
    assert ids(load_splits("mnist", train_size=500, val_size=400, test_size=120).train_x) == ids(splits.train_x)
    too_big = load_splits("mnist", train_size=10**6, val_size=400, test_size=10**6)
    assert too_big.sizes() == {"train": len(synthetic.train_y) - 400, "val": 400, "test": len(synthetic.test_y)}


def test_normalisation_statistics_come_from_the_train_split(synthetic: RawData) -> None:
    splits = load_splits("mnist", train_size=300, val_size=400)
    mean, std = channel_stats(splits.train_x)
    assert splits.mean == pytest.approx(mean) and splits.std == pytest.approx(std)
    x = splits.train_x.double() / 255
    assert splits.mean[0] == pytest.approx(x.mean().item(), abs=1e-9)
    assert splits.std[0] == pytest.approx(x.std(unbiased=False).item(), abs=1e-9)
    everything = channel_stats(synthetic.train_x)
    assert splits.mean != pytest.approx(everything[0], abs=1e-12)  # not the statistics of the whole training set


def test_validation_split_larger_than_the_training_set(synthetic: RawData) -> None:
    with pytest.raises(DnicError) as err:
        load_splits("mnist", val_size=len(synthetic.train_y))
    assert_fixable(err, "val_size")


def test_load_splits_on_the_fixture_root(fixture_data: Path) -> None:
    splits = load_splits("fashion_mnist", train_size=200, val_size=500, test_size=50, root=fixture_data)
    assert splits.sizes() == {"train": 200, "val": 500, "test": 50}
    assert torch.bincount(splits.train_y, minlength=10).tolist() == [20] * 10
    assert torch.bincount(splits.val_y, minlength=10).tolist() == [50] * 10
    assert torch.bincount(splits.test_y, minlength=10).tolist() == [5] * 10
    assert splits.classes == DATASETS["fashion_mnist"].classes
    assert splits.source["kind"] == "idx"


# --------------------------------------------------------------------------------------------------------------
# (d) Bad input: a DnicError that names the problem and the fix


def assert_fixable(err: pytest.ExceptionInfo, *fragments: str) -> None:
    message = str(err.value)
    assert "Fix:" in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_unknown_dataset_lists_the_valid_names() -> None:
    with pytest.raises(DnicError) as err:
        load_raw("imagenet")
    assert_fixable(err, "'imagenet'", "mnist", "fashion_mnist", "cifar10")
    assert dataset_info("Fashion-MNIST").key == "fashion_mnist"  # spelling variants are accepted


@pytest.mark.parametrize("name, key", [("CIFAR-10", "cifar10"), ("cifar_10", "cifar10"), ("Cifar 10", "cifar10"), ("Fashion-MNIST", "fashion_mnist"),
                                       ("fashionmnist", "fashion_mnist"), ("MNIST", "mnist"), ("mnist", "mnist")])
def test_dataset_names_ignore_case_hyphens_and_underscores(name: str, key: str) -> None:
    assert dataset_info(name).key == key


class OfflineDataset:
    """Stands in for a torchvision dataset class on a machine without internet."""

    calls: list[tuple[str, bool, bool]] = []

    def __init__(self, root: str, train: bool = True, download: bool = False, **kwargs) -> None:
        OfflineDataset.calls.append((root, train, download))
        raise RuntimeError("Error downloading: <urlopen error [Errno -3] Temporary failure in name resolution>")


@pytest.mark.parametrize("name, tv_class, hint", [("mnist", "MNIST", "MNIST/raw/"), ("cifar10", "CIFAR10", "CIFAR10-JPEG/*.tar.gz")])
def test_root_without_the_files_asks_for_a_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, tv_class: str, hint: str) -> None:
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, tv_class, OfflineDataset)
    monkeypatch.setattr(OfflineDataset, "calls", [])
    monkeypatch.setenv("DNIC_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DnicError) as err:
        load_raw(name, tmp_path / "empty")
    assert_fixable(err, "holds no copy", dataset_info(name).title, "DNIC_DATA_DIR", hint)
    assert OfflineDataset.calls == []  # an explicit data root is never downloaded into
    assert not (tmp_path / "empty").exists()


@pytest.mark.parametrize("name, tv_class", [("mnist", "MNIST"), ("cifar10", "CIFAR10")])
def test_no_root_and_no_internet_says_how_to_get_the_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, tv_class: str) -> None:
    import torchvision.datasets

    monkeypatch.setattr(torchvision.datasets, tv_class, OfflineDataset)
    monkeypatch.setattr(OfflineDataset, "calls", [])
    monkeypatch.delenv("DNIC_DATA_DIR", raising=False)
    monkeypatch.setenv("DNIC_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DnicError) as err:
        load_raw(name)
    assert_fixable(err, "could not download", dataset_info(name).title, "DNIC_DATA_DIR", "RuntimeError")
    assert OfflineDataset.calls == [(str(tmp_path / "cache" / "torchvision"), True, True)]


def test_incomplete_idx_folder_is_not_taken_for_a_copy(fixture_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    shutil.copytree(fixture_root / "MNIST", tmp_path / "root" / "MNIST")
    (tmp_path / "root" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setattr(torchvision.datasets, "MNIST", OfflineDataset)
    monkeypatch.setenv("DNIC_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DnicError) as err:
        load_raw("mnist", tmp_path / "root")
    assert_fixable(err, "holds no copy of MNIST", "MNIST/raw/")


def test_empty_cifar_batches_folder_is_not_taken_for_a_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "root" / "cifar-10-batches-py").mkdir(parents=True)
    monkeypatch.setenv("DNIC_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DnicError) as err:
        load_raw("cifar10", tmp_path / "root")
    assert_fixable(err, "holds no copy of CIFAR-10", "cifar-10-batches-py/ or CIFAR10-JPEG/*.tar.gz")


@pytest.fixture
def idx_copy(fixture_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A writable copy of the fixture's MNIST folder (damage only the copy)."""
    shutil.copytree(fixture_root / "MNIST", tmp_path / "root" / "MNIST")
    monkeypatch.setenv("DNIC_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "root"


def test_truncated_gzip_idx_file(idx_copy: Path) -> None:
    path = idx_copy / "MNIST" / "raw" / "train-images-idx3-ubyte.gz"
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DnicError) as err:
        load_raw("mnist", idx_copy)
    assert_fixable(err, str(path), "corrupt or truncated")
    assert not list((idx_copy.parent / "cache").rglob("*.pt"))  # nothing cached from a damaged source


def test_idx_file_with_missing_bytes(idx_copy: Path) -> None:
    """A well-formed gzip whose IDX payload is shorter than its header says."""
    path = idx_copy / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz"
    content = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(content[:-784]))
    with pytest.raises(DnicError) as err:
        load_raw("mnist", idx_copy)
    assert_fixable(err, str(path), "expected 78400 bytes")


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a well-formed gzipped IDX file of unsigned bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()))


@pytest.mark.parametrize("short, other, counts", [("labels", "images", "holds 60 labels, but t10k-images-idx3-ubyte.gz beside it holds 100 images"),
                                                  ("images", "labels", "holds 60 images, but t10k-labels-idx1-ubyte.gz beside it holds 100 labels")],
                         ids=["short-labels", "short-images"])
def test_idx_count_mismatch_blames_the_short_file(idx_copy: Path, short: str, other: str, counts: str) -> None:
    """A well-formed IDX file with fewer items than its partner is named as the damaged one, with both counts."""
    raw_dir = idx_copy / "MNIST" / "raw"
    path = raw_dir / f"t10k-{short}-idx{3 if short == 'images' else 1}-ubyte.gz"
    write_idx(path, read_idx(path)[:60])
    with pytest.raises(DnicError) as err:
        load_raw("mnist", idx_copy)
    assert_fixable(err, counts)
    assert err.value.problem.startswith(f"The data file {path} ")
    assert str(raw_dir / f"t10k-{other}") not in str(err.value)


def test_idx_labels_longer_than_the_images(idx_copy: Path) -> None:
    """The training labels copied over the test labels: the (shorter) test images are named, with both counts."""
    raw_dir = idx_copy / "MNIST" / "raw"
    shutil.copy(raw_dir / "train-labels-idx1-ubyte.gz", raw_dir / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DnicError) as err:
        load_raw("mnist", idx_copy)
    assert_fixable(err, str(raw_dir / "t10k-images-idx3-ubyte.gz"), "holds 100 images", "5,100 labels")


def test_non_idx_file(idx_copy: Path) -> None:
    path = idx_copy / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(b"<html>404 Not Found</html>"))
    with pytest.raises(DnicError) as err:
        load_raw("mnist", idx_copy)
    assert_fixable(err, str(path), "not an IDX file")


@pytest.fixture
def tar_copy(fixture_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A writable copy of the fixture's CIFAR-10 JPEG archive; returns the archive's path."""
    folder = tmp_path / "root" / "CIFAR10-JPEG"
    folder.mkdir(parents=True)
    shutil.copy(fixture_root / "CIFAR10-JPEG" / "cifar10-tiny.tar.gz", folder)
    monkeypatch.setenv("DNIC_CACHE_DIR", str(tmp_path / "cache"))
    return folder / "cifar10-tiny.tar.gz"


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_tar_gz_archive(tar_copy: Path, keep: float) -> None:
    blob = tar_copy.read_bytes()
    tar_copy.write_bytes(blob[: int(len(blob) * keep)])
    with pytest.raises(DnicError) as err:
        load_raw("cifar10", tar_copy.parent.parent)
    assert_fixable(err, str(tar_copy), "corrupt or truncated")


def test_archive_that_is_not_a_tar(tar_copy: Path) -> None:
    tar_copy.write_bytes(np.random.RandomState(0).bytes(4096))
    with pytest.raises(DnicError) as err:
        load_raw("cifar10", tar_copy.parent.parent)
    assert_fixable(err, str(tar_copy), "corrupt or truncated")


def _rewrite_tar(tar_copy: Path, edit) -> None:
    """Rewrite the archive copy, letting edit(n, member, blob) return the (possibly changed) blob of member n."""
    buf = io.BytesIO()
    with tarfile.open(tar_copy, "r:gz") as src, tarfile.open(fileobj=buf, mode="w:gz") as dst:
        for n, member in enumerate(src):
            blob = edit(n, member, src.extractfile(member).read())
            member.size = len(blob)
            dst.addfile(member, io.BytesIO(blob))
    tar_copy.write_bytes(buf.getvalue())


def test_archive_with_a_broken_jpeg(tar_copy: Path) -> None:
    _rewrite_tar(tar_copy, lambda n, member, blob: blob[:40] if n == 3 else blob)
    with pytest.raises(DnicError) as err:
        load_raw("cifar10", tar_copy.parent.parent)
    assert_fixable(err, str(tar_copy))


def jpeg(size: int = 32, seed: int = 0) -> bytes:
    """A random RGB JPEG of size×size pixels."""
    pixels = np.random.RandomState(seed).randint(0, 256, (size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=75)
    return buf.getvalue()


def write_archive(path: Path, members: dict[str, bytes]) -> Path:
    """A tar.gz holding the given members (name → bytes); returns its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


@pytest.mark.parametrize("bad, reason", [(b"this is not a jpeg at all", "not a readable image"),
                                         (jpeg()[:300], "Truncated"),
                                         (jpeg(size=16), "16×16")], ids=["garbage", "truncated", "wrong-size"])
def test_damaged_jpeg_member_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: bytes, reason: str) -> None:
    """One bad member among many: the message names it and the archive, not an anonymous in-memory buffer."""
    monkeypatch.setenv("DNIC_CACHE_DIR", str(tmp_path / "cache"))
    archive = write_archive(tmp_path / "root" / "CIFAR10-JPEG" / "tiny.tar.gz", {
        "train/airplane/0000.jpg": jpeg(seed=1), "train/cat/0042.jpg": bad, "train/ship/0007.jpg": jpeg(seed=2),
        "test/airplane/0000.jpg": jpeg(seed=3), "test/truck/0001.jpg": jpeg(seed=4),
    })
    with pytest.raises(DnicError) as err:
        load_raw("cifar10", tmp_path / "root")
    assert_fixable(err, "'train/cat/0042.jpg'", str(archive), reason)
    assert "BytesIO" not in str(err.value)
    assert not list((tmp_path / "cache").rglob("*.pt"))


def test_archive_with_an_unknown_class_folder(tar_copy: Path) -> None:
    def rename_first(n: int, member: tarfile.TarInfo, blob: bytes) -> bytes:
        if n == 0:
            member.name = "train/unicorn/0000.jpg"
        return blob

    _rewrite_tar(tar_copy, rename_first)
    with pytest.raises(DnicError) as err:
        load_raw("cifar10", tar_copy.parent.parent)
    assert_fixable(err, str(tar_copy), "unicorn")


def damage_a_copy(fixture_root: Path, root: Path, name: str) -> Path:
    """Copy the fixture's MNIST folder or CIFAR-10 JPEG archive into root and truncate one file; returns that file."""
    folder = "CIFAR10-JPEG" if name == "cifar10" else "MNIST"
    shutil.copytree(fixture_root / folder, root / folder)
    path = root / ("CIFAR10-JPEG/cifar10-tiny.tar.gz" if name == "cifar10" else "MNIST/raw/train-labels-idx1-ubyte.gz")
    path.write_bytes(path.read_bytes()[:100])
    return path


@pytest.mark.parametrize("name", ["mnist", "cifar10"])
@pytest.mark.parametrize("given_by", ["data_dir parameter", "DNIC_DATA_DIR"])
def test_damaged_file_in_a_data_root_asks_for_a_good_copy(fixture_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          name: str, given_by: str) -> None:
    """torchvision never downloads into a data root: the fix names the root and how it was set, and never says to delete."""
    root = tmp_path / "root"
    path = damage_a_copy(fixture_root, root, name)
    monkeypatch.setenv("DNIC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("DNIC_DATA_DIR", str(root) if given_by == "DNIC_DATA_DIR" else str(tmp_path / "elsewhere"))
    with pytest.raises(DnicError) as err:
        load_raw(name, root if given_by == "data_dir parameter" else None)
    assert_fixable(err, str(path), "corrupt or truncated")
    fix = err.value.fix
    assert "replace" in fix and path.name in fix and str(root) in fix and given_by in fix, fix
    assert "delete" not in fix and "download it again" not in fix and "downloads it again" not in fix, fix
    if name == "cifar10":
        assert "JPEG copy" in fix, fix


class AlreadyDownloaded:
    """Stands in for a torchvision dataset class whose files are already in the download cache."""

    def __init__(self, root: str, train: bool = True, download: bool = False, **kwargs) -> None:
        pass


@pytest.mark.parametrize("name, tv_class, deletable", [("mnist", "MNIST", True), ("cifar10", "CIFAR10", False)])
def test_damaged_file_in_the_download_cache(fixture_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            name: str, tv_class: str, deletable: bool) -> None:
    """Only torchvision's own files in its download cache may be deleted to be downloaded again; never the JPEG copy."""
    import torchvision.datasets

    path = damage_a_copy(fixture_root, tmp_path / "cache" / "torchvision", name)
    monkeypatch.setattr(torchvision.datasets, tv_class, AlreadyDownloaded)
    monkeypatch.delenv("DNIC_DATA_DIR", raising=False)
    monkeypatch.setenv("DNIC_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DnicError) as err:
        load_raw(name)
    assert_fixable(err, str(path), "corrupt or truncated")
    fix = err.value.fix
    if deletable:
        assert f"delete {path}" in fix and "downloads it again" in fix and "replace" not in fix, fix
    else:
        assert "replace" in fix and "JPEG copy" in fix and "downloads it again" not in fix, fix


# --------------------------------------------------------------------------------------------------------------
# (e) Augment


def test_augment_without_pad_rotation_or_flip_is_the_identity() -> None:
    x = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    out = Augment(pad=0, degrees=0, flip=False)(x, torch.Generator().manual_seed(1))
    assert out.shape == x.shape
    assert torch.allclose(out, x, atol=1e-5)


def test_forced_flip_mirrors_every_image(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    real_rand = torch.rand
    monkeypatch.setattr(torch, "rand", lambda *args, **kwargs: torch.zeros_like(real_rand(*args, **kwargs)))  # every coin < 0.5
    out = Augment(pad=0, degrees=0, flip=True)(x)
    assert torch.allclose(out, x.flip(-1), atol=1e-5)
    assert not torch.allclose(out, x, atol=1e-2)


def test_random_flip_gives_each_image_or_its_mirror() -> None:
    x = torch.rand(64, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = Augment(pad=0, degrees=0, flip=True)(x, torch.Generator().manual_seed(2))
    same = torch.isclose(out, x, atol=1e-5).flatten(1).all(1)
    mirrored = torch.isclose(out, x.flip(-1), atol=1e-5).flatten(1).all(1)
    assert bool((same | mirrored).all())
    assert 0 < int(mirrored.sum()) < 64  # both happen


def shifted(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[i, j] = img[i + dy, j + dx], zero outside."""
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    ys, yd = slice(max(dy, 0), h + min(dy, 0)), slice(max(-dy, 0), h + min(-dy, 0))
    xs, xd = slice(max(dx, 0), w + min(dx, 0)), slice(max(-dx, 0), w + min(-dx, 0))
    out[..., yd, xd] = img[..., ys, xs]
    return out


def test_pad_only_is_an_exact_integer_shift() -> None:
    pad = 3
    x = torch.randint(1, 256, (32, 2, 20, 20), generator=torch.Generator().manual_seed(0)).float() / 255
    out = Augment(pad=pad, degrees=0, flip=False)(x, torch.Generator().manual_seed(5))
    found = []
    for img, res in zip(x, out):
        matches = [(dy, dx) for dy, dx in itertools.product(range(-pad, pad + 1), repeat=2) if torch.allclose(res, shifted(img, dy, dx), atol=1e-5)]
        assert len(matches) == 1, "each output must be exactly one integer shift of its input"
        found.append(matches[0])
    assert any(s != (0, 0) for s in found)
    assert len(set(found)) > 5  # the shifts vary
    values = set((x * 255).round().long().unique().tolist()) | {0}
    assert set((out * 255).round().long().unique().tolist()) <= values
    assert torch.allclose(out * 255, (out * 255).round(), atol=1e-3)  # no interpolated values


def test_augment_is_reproducible_with_a_generator() -> None:
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    aug = Augment(pad=4, degrees=10.0, flip=True)
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert not torch.allclose(a, x)


# --------------------------------------------------------------------------------------------------------------
# (f) BatchLoader


@pytest.fixture(scope="module")
def grey() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (100, 1, 28, 28), generator=g, dtype=torch.uint8)
    y = torch.arange(100) % 10
    return x, y


def test_batches_cover_the_data_in_order(grey) -> None:
    x, y = grey
    mean, std = channel_stats(x)
    loader = BatchLoader(x, y, 32, mean, std)
    batches = list(loader)
    assert len(loader) == len(batches) == 4
    assert [len(yb) for _, yb in batches] == [32, 32, 32, 4]
    assert all(xb.shape == (len(yb), 1, 28, 28) and xb.dtype == torch.float32 for xb, yb in batches)
    assert torch.equal(torch.cat([yb for _, yb in batches]), y)
    first = batches[0][0]
    assert torch.allclose(first * std[0] + mean[0], x[:32].float() / 255, atol=1e-5)


def test_normalised_with_own_statistics(grey) -> None:
    x, y = grey
    mean, std = channel_stats(x)
    allx = torch.cat([xb for xb, _ in BatchLoader(x, y, 16, mean, std)])
    assert abs(allx.mean().item()) < 1e-4
    assert allx.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)


def test_drop_last_and_len(grey) -> None:
    x, y = grey
    loader = BatchLoader(x, y, 32, (0.5,), (0.25,), drop_last=True)
    assert len(loader) == 3
    assert [len(yb) for _, yb in loader] == [32, 32, 32]
    assert len(BatchLoader(x, y, 100, (0.5,), (0.25,))) == 1
    assert len(BatchLoader(x, y, 101, (0.5,), (0.25,), drop_last=True)) == 0
    assert len(BatchLoader(x, y, 7, (0.5,), (0.25,))) == math.ceil(100 / 7)


def test_resize_and_grey_to_rgb(grey) -> None:
    x, y = grey
    loader = BatchLoader(x, y, 10, (0.5,), (0.25,), image_size=64, channels=3)
    xb, yb = next(iter(loader))
    assert xb.shape == (10, 3, 64, 64)
    assert torch.equal(xb[:, 0], xb[:, 1]) and torch.equal(xb[:, 1], xb[:, 2])
    assert BatchLoader(x, y, 10, (0.5,), (0.25,), channels=3).__iter__().__next__()[0].shape == (10, 3, 28, 28)
    assert next(iter(BatchLoader(x, y, 10, (0.5,), (0.25,), image_size=64)))[0].shape == (10, 1, 64, 64)


def test_channels_last_keeps_values(grey) -> None:
    x, y = grey
    a = next(iter(BatchLoader(x, y, 8, (0.5,), (0.25,), image_size=32, channels=3)))[0]
    b = next(iter(BatchLoader(x, y, 8, (0.5,), (0.25,), image_size=32, channels=3, channels_last=True)))[0]
    assert b.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(a, b)


def test_shuffle_is_reproducible_with_the_same_seed(grey) -> None:
    x, y = grey
    ident = torch.arange(100)  # use the labels to carry each image's index

    def order(seed: int) -> list[int]:
        return torch.cat([yb for _, yb in BatchLoader(x, ident, 16, (0.5,), (0.25,), shuffle=True, seed=seed)]).tolist()

    assert order(7) == order(7)
    assert order(7) != order(8)
    assert sorted(order(7)) == list(range(100))
    assert order(7) != list(range(100))
    loader = BatchLoader(x, ident, 16, (0.5,), (0.25,), shuffle=True, seed=7)
    first_pass = torch.cat([yb for _, yb in loader]).tolist()
    second_pass = torch.cat([yb for _, yb in loader]).tolist()
    assert first_pass == order(7) and second_pass != first_pass  # a new order every epoch
    # images and labels stay paired under shuffling
    for xb, yb in BatchLoader(x, ident, 16, (0.0,), (1.0,), shuffle=True, seed=3):
        assert torch.allclose(xb, x[yb].float() / 255)


def test_loader_with_augmentation_changes_images_reproducibly(grey) -> None:
    x, y = grey
    kwargs = dict(shuffle=True, seed=1, augment=Augment(pad=2, degrees=10.0))
    a = [xb for xb, _ in BatchLoader(x, y, 25, (0.5,), (0.25,), **kwargs)]
    b = [xb for xb, _ in BatchLoader(x, y, 25, (0.5,), (0.25,), **kwargs)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_non_positive_batch_size_is_rejected(grey) -> None:
    x, y = grey
    with pytest.raises(DnicError) as err:
        BatchLoader(x, y, 0, (0.5,), (0.25,))
    assert_fixable(err, "Batch size")


def test_alternating_flips_mirror_each_image_in_exactly_one_of_two_consecutive_epochs() -> None:
    x = torch.arange(16 * 4 * 4, dtype=torch.float32).reshape(16, 1, 4, 4).to(torch.uint8)
    loader = BatchLoader(x, torch.arange(16), 4, (0.0,), (1 / 255,), shuffle=True, augment=Augment(pad=0, flip=True, alternate=True))

    def mirrored(epoch: int) -> dict[int, bool]:
        loader.epoch = epoch
        seen = {}
        for xb, yb in loader:
            for image, label in zip(xb, yb):
                seen[int(label)] = torch.allclose(image, x[label].float().flip(-1))
                assert seen[int(label)] or torch.allclose(image, x[label].float())
        return seen

    first, second, third = mirrored(1), mirrored(2), mirrored(3)
    assert all(first[i] != second[i] for i in range(16)) and first == third
    assert 0 < sum(first.values()) < 16  # each image has its own parity


def test_the_exploration_calls_a_train_test_shift_small_only_when_it_is() -> None:
    def stats(test_mean: float) -> pd.DataFrame:
        """Pixel statistics of one grey dataset: training mean 0.5 and std 0.2, the test mean given."""
        return pd.DataFrame([{"dataset": "D", "split": "train", "channel": "grey", "mean": 0.5, "std": 0.2},
                             {"dataset": "D", "split": "test", "channel": "grey", "mean": test_mean, "std": 0.2}]).set_index(["dataset", "split", "channel"])

    small = exploration.discussion(stats(0.502)).splitlines()[0]
    assert small == ("- **D**: training mean grey 0.5000; train and test means differ by at most 0.0020 (1.0% of a training standard deviation), "
                     "so normalising with training statistics suits the test set too.")
    large = exploration.discussion(stats(0.56)).splitlines()[0]
    assert "at most 0.0600 (30.0% of a training standard deviation), so the test inputs arrive shifted" in large and "suits" not in large
