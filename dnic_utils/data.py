"""Datasets decoded once into cached uint8 tensors, a fixed validation split, and an on-device batch loader."""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import struct
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.model_selection import train_test_split

from .config import cache_dir
from .errors import DnicError
from .records import atomic_torch_save

SPLIT_SEED = 0  # the validation split and the subsets are the same for every run and seed


@dataclass(frozen=True)
class DatasetInfo:
    """What the package knows about one dataset."""

    key: str
    title: str
    torchvision_class: str  # the torchvision.datasets class that downloads it
    folder: str  # torchvision's folder under the data root
    channels: int
    size: int
    flip: bool  # horizontal flips keep the label (never for digits)
    sizes: tuple[int, int]  # canonical train and test set sizes
    classes: tuple[str, ...]


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", "MNIST", "MNIST", "MNIST", 1, 28, False, (60_000, 10_000), tuple(str(i) for i in range(10))),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", "Fashion-MNIST", "FashionMNIST", "FashionMNIST", 1, 28, True, (60_000, 10_000),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
    "cifar10": DatasetInfo(
        "cifar10", "CIFAR-10", "CIFAR10", "cifar-10-batches-py", 3, 32, True, (50_000, 10_000),
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
}
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def dataset_info(name: str) -> DatasetInfo:
    """The DatasetInfo for a name such as 'mnist', 'fashion-mnist' or 'cifar10'."""
    key = name.lower().replace("-", "_") if isinstance(name, str) else name
    if not isinstance(key, str) or key not in DATASETS:
        raise DnicError(f"Unknown dataset {name!r}.", f"use one of: {', '.join(DATASETS)}.")
    return DATASETS[key]


def dataset_title(info: DatasetInfo, source: dict) -> str:
    """The dataset's name as the report prints it, naming the lossy JPEG copy when it was used."""
    return f"{info.title} (JPEG q75 copy)" if source.get("lossy") else info.title


@dataclass
class RawData:
    """A dataset's full train and test sets as uint8 (N, C, H, W) tensors with int64 labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: dict = field(default_factory=dict)


def data_dir(root: str | os.PathLike | None = None) -> Path | None:
    """The offline data root: the argument, else DNIC_DATA_DIR, else None (torchvision download)."""
    value = root or os.environ.get("DNIC_DATA_DIR")
    return Path(value).expanduser() if value else None


def _sha256(paths: list[Path]) -> str:
    """One sha256 over the bytes of several files, in the given order."""
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _corrupt(path: Path, err: Exception) -> DnicError:
    """The error for a file that cannot be decoded."""
    return DnicError(
        f"The data file {path} is corrupt or truncated ({type(err).__name__}: {err}).",
        "replace it with a good copy (or delete it so torchvision downloads it again), then rerun.",
    )


def read_idx(path: Path) -> np.ndarray:
    """Decode one IDX file (plain or .gz) of unsigned bytes into an array."""
    try:
        with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
            data = f.read()
        if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
            raise ValueError("not an IDX file of unsigned bytes")
        ndim = data[3]
        dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
        payload = memoryview(data)[4 + 4 * ndim :]
        if len(payload) != math.prod(dims):
            raise ValueError(f"expected {math.prod(dims)} bytes of data, found {len(payload)}")
    except (OSError, EOFError, zlib.error, struct.error, ValueError) as err:
        raise _corrupt(path, err) from None
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims)


def _idx_files(folder: Path) -> dict[str, list[Path]] | None:
    """The four IDX files under folder (each plain or .gz), or None if any is missing."""
    found = {}
    for split, names in _IDX_FILES.items():
        paths = []
        for name in names:
            candidates = [folder / name, folder / f"{name}.gz"]
            hit = next((c for c in candidates if c.is_file()), None)
            if hit is None:
                return None
            paths.append(hit)
        found[split] = paths
    return found


def _from_idx(files: dict[str, list[Path]]) -> RawData:
    """RawData from the four IDX files of MNIST or Fashion-MNIST."""
    arrays = {}
    for split, (img_path, lbl_path) in files.items():
        x, y = read_idx(img_path), read_idx(lbl_path)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise _corrupt(img_path, ValueError(f"images {x.shape} do not match labels {y.shape}"))
        arrays[split] = (torch.from_numpy(x.copy()).unsqueeze(1), torch.from_numpy(y.astype(np.int64)))
    return RawData(*arrays["train"], *arrays["test"])


def _from_cifar_batches(root: Path) -> RawData:
    """RawData from torchvision's cifar-10-batches-py folder (checked against torchvision's md5 table)."""
    from torchvision.datasets import CIFAR10

    out = []
    for train in (True, False):
        try:
            ds = CIFAR10(str(root), train=train, download=False)
        except (RuntimeError, OSError, EOFError, ValueError) as err:
            raise _corrupt(root / "cifar-10-batches-py", err) from None
        out += [torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets, dtype=torch.int64)]
    return RawData(*out)


def _from_jpeg_tar(path: Path, classes: tuple[str, ...]) -> RawData:
    """RawData from the image-folder archive of JPEGs (train/<class>/*.jpg, test/<class>/*.jpg)."""
    from PIL import Image, UnidentifiedImageError

    blobs: dict[str, list[tuple[str, int, bytes]]] = {"train": [], "test": []}
    index = {c: i for i, c in enumerate(classes)}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                parts = Path(member.name).parts
                if not member.isfile() or not member.name.lower().endswith(".jpg") or len(parts) < 3:
                    continue
                split, cls = parts[-3], parts[-2]
                if split not in blobs or cls not in index:
                    raise ValueError(f"unexpected member {member.name!r}")
                blobs[split].append((member.name, index[cls], tar.extractfile(member).read()))
    except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError) as err:
        raise _corrupt(path, err) from None
    out = []
    for split, items in blobs.items():
        if not items:
            raise _corrupt(path, ValueError(f"no {split}/<class>/*.jpg images inside"))
        items.sort()
        try:  # decoded once, then cached: PIL is fine here, it never runs in the training loop
            images = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for _, _, b in items])
        except (OSError, UnidentifiedImageError, ValueError) as err:
            raise _corrupt(path, err) from None
        out += [torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.tensor([label for _, label, _ in items], dtype=torch.int64)]
    return RawData(*out)


def _download(info: DatasetInfo, root: Path) -> None:
    """Fetch a dataset's files into root with torchvision's own download (needs internet)."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, info.torchvision_class)
    try:
        for train in (True, False):
            cls(str(root), train=train, download=True)
    except Exception as err:  # torchvision raises URLError, RuntimeError, … when offline
        raise DnicError(
            f"No offline copy of {info.title} is configured and torchvision could not download it into {root} ({type(err).__name__}: {err}).",
            f"connect to the internet, or set DNIC_DATA_DIR (or the `data_dir` parameter) to a folder holding {info.folder}/ "
            f"in torchvision's layout{' or CIFAR10-JPEG/*.tar.gz' if info.key == 'cifar10' else ''}.",
        ) from None


def _find_source(info: DatasetInfo, root: Path | None) -> tuple[str, list[Path], bool] | None:
    """(kind, files, lossy) for the first offline copy found under root, or None."""
    if root is None:
        return None
    if info.key == "cifar10":
        batches = root / info.folder
        files = sorted(p for p in batches.iterdir() if p.is_file()) if batches.is_dir() else []
        if files:  # an empty folder is no copy
            return "cifar-10-batches-py", files, False
        archives = sorted((root / "CIFAR10-JPEG").glob("*.tar.gz"))
        if archives:
            return "CIFAR10-JPEG", archives[:1], True
        return None
    files = _idx_files(root / info.folder / "raw")
    return ("idx", files["train"] + files["test"], False) if files else None


def load_raw(name: str, root: str | os.PathLike | None = None) -> RawData:
    """A dataset's train and test tensors, decoded once and then read from the cache."""
    info = dataset_info(name)
    base = data_dir(root)
    found = _find_source(info, base)
    if found is None and base is not None:
        layout = f"{info.folder}/raw/ with the four IDX files" if info.channels == 1 else f"{info.folder}/ or CIFAR10-JPEG/*.tar.gz"
        raise DnicError(
            f"The data root {base} holds no copy of {info.title} (looked for {layout}).",
            f"put the files there in torchvision's layout, point DNIC_DATA_DIR / `data_dir` at the right folder, "
            f"or unset both to let torchvision download the data (internet needed).",
        )
    found_in_root = found is not None
    if found is None:
        base = cache_dir() / "torchvision"
        _download(info, base)
        found = _find_source(info, base)
        if found is None:
            raise DnicError(f"torchvision's download left no usable copy of {info.title} in {base}.", f"delete {base} and try again.")
    kind, files, lossy = found
    digest = _sha256(files)
    cached = cache_dir() / "datasets" / f"{info.key}-{digest[:16]}.pt"
    root_label = "data_dir parameter" if root else "DNIC_DATA_DIR" if found_in_root else "torchvision download cache"
    # The folder relative to the data root: records name no machine paths.
    source = {"kind": kind, "root": root_label, "path": files[0].parent.relative_to(base).as_posix(), "lossy": lossy, "sha256": digest}
    if cached.is_file():
        try:
            blob = torch.load(cached, weights_only=True)
            return _checked(RawData(blob["train_x"], blob["train_y"], blob["test_x"], blob["test_y"], source), info)
        except Exception:  # a damaged cache is derived data: decode again below
            cached.unlink(missing_ok=True)
    if kind == "idx":
        raw = _from_idx({"train": files[:2], "test": files[2:]})
    elif kind == "cifar-10-batches-py":
        raw = _from_cifar_batches(files[0].parent.parent)
    else:
        raw = _from_jpeg_tar(files[0], info.classes)
    raw.source = source
    raw = _checked(raw, info)
    atomic_torch_save({"train_x": raw.train_x, "train_y": raw.train_y, "test_x": raw.test_x, "test_y": raw.test_y}, cached)
    return raw


def _checked(raw: RawData, info: DatasetInfo) -> RawData:
    """Raise if the decoded tensors do not have the dataset's shape and label range."""
    for split, x, y in (("train", raw.train_x, raw.train_y), ("test", raw.test_x, raw.test_y)):
        shape_ok = x.dtype == torch.uint8 and x.ndim == 4 and tuple(x.shape[1:]) == (info.channels, info.size, info.size)
        if not shape_ok or len(x) != len(y) or len(y) == 0 or int(y.min()) < 0 or int(y.max()) >= len(info.classes):
            raise DnicError(
                f"The {split} set of {info.title} from {raw.source.get('path')} has an unexpected shape {tuple(x.shape)} or labels.",
                "point DNIC_DATA_DIR at an unmodified copy in torchvision's layout.",
            )
    return raw


def channel_stats(x: torch.Tensor, chunk: int = 8192) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images, scaled to [0, 1]."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].to(torch.float64).div_(255)
        total += part.sum(dim=(0, 2, 3))
        squares += part.square().sum(dim=(0, 2, 3))
    count = x.shape[0] * x.shape[2] * x.shape[3]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _stratified_subset(labels: torch.Tensor, size: int | None) -> np.ndarray:
    """Indices of a fixed stratified subset of the given size (all when size is None or too large)."""
    idx = np.arange(len(labels))
    if size is None or size >= len(labels):
        return idx
    classes = len(torch.unique(labels))
    if not classes <= size <= len(labels) - classes:
        raise DnicError(f"A subset of {size} images cannot keep all {classes} classes of a split of {len(labels)}.",
                        f"use a subset size between {classes} and {len(labels) - classes}, or None for all.")
    keep, _ = train_test_split(idx, train_size=size, stratify=labels.numpy(), random_state=SPLIT_SEED)
    return np.sort(keep)


def validation_split(info: DatasetInfo, labels: torch.Tensor, val_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, validation) indices of the fixed stratified validation split of a training set."""
    low, high = len(info.classes), len(labels) - 10 * len(info.classes)
    if not low <= val_size <= high:
        raise DnicError(
            f"A validation split (`val_size`) of {val_size} images does not fit the {len(labels):,} training images of {info.title}.",
            f"set `val_size` between {low} and {high:,}.",
        )
    fit_idx, val_idx = train_test_split(np.arange(len(labels)), test_size=val_size, stratify=labels.numpy(), random_state=SPLIT_SEED)
    return np.sort(fit_idx), np.sort(val_idx)


@dataclass
class Splits:
    """Train, validation and test tensors of one run, with normalisation statistics from the train split."""

    info: DatasetInfo
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: dict

    @property
    def classes(self) -> tuple[str, ...]:
        """The class names in label order."""
        return self.info.classes

    def sizes(self) -> dict[str, int]:
        """Number of images in each split."""
        return {"train": len(self.train_y), "val": len(self.val_y), "test": len(self.test_y)}


def load_splits(
    name: str, train_size: int | None = None, val_size: int = 5000, test_size: int | None = None, root: str | os.PathLike | None = None
) -> Splits:
    """The fixed stratified validation split carved from the training set, optional subsets, and train statistics."""
    info = dataset_info(name)
    raw = load_raw(name, root)
    fit_idx, val_idx = validation_split(info, raw.train_y, val_size)
    fit_idx = fit_idx[_stratified_subset(raw.train_y[fit_idx], train_size)]
    test_idx = _stratified_subset(raw.test_y, test_size)
    train_x = raw.train_x[fit_idx]
    mean, std = channel_stats(train_x)
    return Splits(
        info, train_x, raw.train_y[fit_idx], raw.train_x[val_idx], raw.train_y[val_idx],
        raw.test_x[test_idx], raw.test_y[test_idx], mean, std, raw.source,
    )


@dataclass(frozen=True)
class Augment:
    """Per-image random translation (crop with zero padding), rotation and optional flip, done on whole batches."""

    pad: int = 4
    degrees: float = 0.0
    flip: bool = False

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a float batch (B, C, H, W) with one affine resample."""
        b, _, h, w = x.shape
        dev = x.device
        angle = (torch.rand(b, device=dev, generator=generator) * 2 - 1) * math.radians(self.degrees)
        shift = torch.randint(-self.pad, self.pad + 1, (2, b), device=dev, generator=generator).float()
        mirror = torch.ones(b, device=dev)
        if self.flip:
            mirror = torch.where(torch.rand(b, device=dev, generator=generator) < 0.5, -mirror, mirror)
        cos, sin = angle.cos(), angle.sin()
        # Output-to-input map; integer shifts of 2/W land on pixel centres, so angle 0 is an exact crop.
        theta = torch.stack(
            [torch.stack([cos * mirror, -sin, 2 * shift[0] / w], 1), torch.stack([sin * mirror, cos, 2 * shift[1] / h], 1)], 1
        )
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def default_augment(info: DatasetInfo) -> Augment:
    """The report's augmentation: crop with padding, ±10° rotation, flips for natural images only."""
    return Augment(pad=2 if info.size <= 28 else 4, degrees=10.0, flip=info.flip)


class BatchLoader:
    """Slices uint8 tensors held on the target device and augments and normalises whole batches there."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        *,
        device: str | torch.device = "cpu",
        shuffle: bool = False,
        augment: Augment | None = None,
        image_size: int | None = None,
        channels: int | None = None,
        drop_last: bool = False,
        seed: int = 0,
        channels_last: bool = False,
    ) -> None:
        if batch_size <= 0:
            raise DnicError(f"Batch size must be positive, got {batch_size}.", "pass a batch size ≥ 1.")
        self.device = torch.device(device)
        self.x, self.y = x.to(self.device), y.to(self.device)
        self.batch_size, self.shuffle, self.augment, self.drop_last = batch_size, shuffle, augment, drop_last
        self.image_size, self.channels_last = image_size, channels_last
        self.channels = channels or x.shape[1]
        repeat = self.channels // x.shape[1]
        self.mean = torch.tensor(mean, device=self.device).repeat(repeat).view(1, -1, 1, 1)
        self.std = torch.tensor(std, device=self.device).repeat(repeat).view(1, -1, 1, 1)
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def __len__(self) -> int:
        """Number of batches per pass."""
        n = len(self.y)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def prepare(self, xb: torch.Tensor) -> torch.Tensor:
        """Resize, expand grey to RGB and normalise a float batch in [0, 1]."""
        if self.image_size and xb.shape[-1] != self.image_size:
            xb = F.interpolate(xb, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        if xb.shape[1] != self.channels:
            xb = xb.expand(-1, self.channels, -1, -1)
        xb = (xb - self.mean) / self.std
        return xb.contiguous(memory_format=torch.channels_last) if self.channels_last else xb

    def __iter__(self):
        """Yield (images, labels) batches on the device."""
        n = len(self.y)
        order = torch.randperm(n, device=self.device, generator=self.generator) if self.shuffle else None
        for i in range(len(self)):
            sl = slice(i * self.batch_size, min(n, (i + 1) * self.batch_size))
            idx = order[sl] if order is not None else sl
            xb = self.x[idx].float().div_(255)
            if self.augment is not None:
                xb = self.augment(xb, self.generator)
            yield self.prepare(xb), self.y[idx]
