"""Reading a dataset's files (IDX, CIFAR-10 batches or the JPEG archive, else torchvision's download) into cached uint8 tensors."""

from __future__ import annotations

import gzip
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

from ..errors import DnicError
from ..files import atomic_torch_save, file_sha256
from ..settings import cache_dir, data_dir
from .datasets import DatasetInfo, dataset_info

_CACHE = "torchvision download cache"  # the one origin torchvision downloads again
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


@dataclass
class RawData:
    """A dataset's full train and test sets as uint8 (N, C, H, W) tensors with int64 labels."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: dict = field(default_factory=dict)


class _Unreadable(Exception):
    """A data file that cannot be decoded; load_raw turns it into a DnicError whose fix depends on where the file came from."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def _explained(err: Exception) -> str:
    """An exception as 'Type: message' for an error message."""
    return f"{type(err).__name__}: {err}"


def _repair(path: Path, kind: str, origin: str, base: Path) -> str:
    """How to repair an unreadable file: delete it only where torchvision downloaded it and will download it again."""
    if origin == _CACHE and kind != "CIFAR10-JPEG":
        return f"delete {path} so that torchvision downloads it again (internet needed), then rerun."
    never = "torchvision never downloads this JPEG copy" if kind == "CIFAR10-JPEG" else "torchvision never downloads into a data root"
    return f"replace {path.name} with a good copy from wherever the files in {base} ({origin}) came from, then rerun ({never})."


def _corrupt(bad: _Unreadable, fix: str) -> DnicError:
    """The error for a file that cannot be decoded."""
    return DnicError(f"The data file {bad.path} is corrupt or truncated ({bad.reason}).", fix)


def read_idx(path: Path) -> np.ndarray:
    """Decode one IDX file (plain or .gz) of unsigned bytes into an array; raises _Unreadable."""
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
        raise _Unreadable(path, _explained(err)) from None
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


def _check_idx_pair(img_path: Path, x: np.ndarray, lbl_path: Path, y: np.ndarray) -> None:
    """Raise _Unreadable naming the file at fault when images and labels do not pair up (the shorter one when counts differ)."""
    if x.ndim != 3:
        raise _Unreadable(img_path, f"it holds an array of shape {x.shape}, not (images, rows, columns)")
    if y.ndim != 1:
        raise _Unreadable(lbl_path, f"it holds an array of shape {y.shape}, not one label per image")
    if len(y) < len(x):
        raise _Unreadable(lbl_path, f"it holds {len(y):,} labels, but {img_path.name} beside it holds {len(x):,} images")
    if len(x) < len(y):
        raise _Unreadable(img_path, f"it holds {len(x):,} images, but {lbl_path.name} beside it holds {len(y):,} labels")


def _from_idx(files: dict[str, list[Path]]) -> RawData:
    """RawData from the four IDX files of MNIST or Fashion-MNIST."""
    arrays = {}
    for split, (img_path, lbl_path) in files.items():
        x, y = read_idx(img_path), read_idx(lbl_path)
        _check_idx_pair(img_path, x, lbl_path, y)
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
            raise _Unreadable(root / "cifar-10-batches-py", _explained(err)) from None
        out += [torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets, dtype=torch.int64)]
    return RawData(*out)


def _decode_jpeg(archive: Path, member: str, blob: bytes, size: int) -> np.ndarray:
    """One size×size RGB image (H, W, 3) from a member of the archive; raises _Unreadable naming the member."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))
    except UnidentifiedImageError:  # its message names only the in-memory buffer
        raise _Unreadable(archive, f"its member {member!r} is not a readable image: no image format recognised") from None
    except (OSError, ValueError) as err:
        raise _Unreadable(archive, f"its member {member!r} is not a readable image: {_explained(err)}") from None
    if image.shape[:2] != (size, size):
        raise _Unreadable(archive, f"its member {member!r} is {image.shape[1]}×{image.shape[0]} pixels, not {size}×{size}")
    return image


def _from_jpeg_tar(path: Path, classes: tuple[str, ...], size: int) -> RawData:
    """RawData from the image-folder archive of size×size JPEGs (train/<class>/*.jpg, test/<class>/*.jpg)."""
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
        raise _Unreadable(path, _explained(err)) from None
    out = []
    for split, items in blobs.items():
        if not items:
            raise _Unreadable(path, f"no {split}/<class>/*.jpg images inside")
        items.sort()
        # decoded once, then cached: PIL is fine here, it never runs in the training loop
        images = np.stack([_decode_jpeg(path, name, blob, size) for name, _, blob in items])
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
            "put the files there in torchvision's layout, point DNIC_DATA_DIR / `data_dir` at the right folder, "
            "or unset both to let torchvision download the data (internet needed).",
        )
    found_in_root = found is not None
    if found is None:
        base = cache_dir() / "torchvision"
        _download(info, base)
        found = _find_source(info, base)
        if found is None:
            raise DnicError(f"torchvision's download left no usable copy of {info.title} in {base}.", f"delete {base} and try again.")
    kind, files, lossy = found
    digest = file_sha256(*files)
    cached = cache_dir() / "datasets" / f"{info.key}-{digest[:16]}.pt"
    root_label = "data_dir parameter" if root else "DNIC_DATA_DIR" if found_in_root else _CACHE
    # The folder relative to the data root: records name no machine paths.
    source = {"kind": kind, "root": root_label, "path": files[0].parent.relative_to(base).as_posix(), "lossy": lossy, "sha256": digest}
    if cached.is_file():
        try:
            blob = torch.load(cached, weights_only=True)
            return _checked(RawData(blob["train_x"], blob["train_y"], blob["test_x"], blob["test_y"], source), info)
        except Exception:  # a damaged cache is derived data: decode again below
            cached.unlink(missing_ok=True)
    try:
        raw = _decode(kind, files, info)
    except _Unreadable as bad:
        raise _corrupt(bad, _repair(bad.path, kind, root_label, base)) from None
    raw.source = source
    raw = _checked(raw, info)
    atomic_torch_save({"train_x": raw.train_x, "train_y": raw.train_y, "test_x": raw.test_x, "test_y": raw.test_y}, cached)
    return raw


def _decode(kind: str, files: list[Path], info: DatasetInfo) -> RawData:
    """RawData decoded from the files _find_source found; raises _Unreadable."""
    if kind == "idx":
        return _from_idx({"train": files[:2], "test": files[2:]})
    if kind == "cifar-10-batches-py":
        return _from_cifar_batches(files[0].parent.parent)
    return _from_jpeg_tar(files[0], info.classes, info.size)


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
