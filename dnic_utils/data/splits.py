"""The fixed stratified validation split, optional subsets, and each run's train, validation and test tensors."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from ..errors import DnicError
from .batches import Augment, BatchLoader
from .datasets import DatasetInfo, dataset_info
from .sources import load_raw

SPLIT_SEED = 0  # the validation split and the subsets are the same for every run and seed
EVAL_BATCH = 512  # validation and test batches: no gradients, so larger than training's


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


def val_size_range(info: DatasetInfo, train_images: int) -> tuple[int, int]:
    """The smallest and largest validation split of a training set: one image per class, and ten per class left for training."""
    return len(info.classes), train_images - 10 * len(info.classes)


def validation_split(info: DatasetInfo, labels: torch.Tensor, val_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, validation) indices of the fixed stratified validation split of a training set."""
    low, high = val_size_range(info, len(labels))
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

    @property
    def data_id(self) -> str:
        """The source's checksum and the split sizes: a checkpoint made from other data is not resumed."""
        return f"{self.source.get('sha256')}:{self.sizes()}"

    def loader(self, part: str, batch_size: int, device: str, *, train: bool = False, augment: Augment | None = None,
               seed: int = 0, image_size: int | None = None) -> BatchLoader:
        """A channels_last loader over 'train', 'val' or 'test' (resized to image_size if given).

        train=True shuffles, augments (if given) and drops a ragged last batch.
        """
        x, y = getattr(self, f"{part}_x"), getattr(self, f"{part}_y")
        return BatchLoader(x, y, batch_size, self.mean, self.std, device=device, channels_last=True, shuffle=train, seed=seed,
                           augment=augment if train else None, drop_last=train and len(y) > batch_size, image_size=image_size)


@dataclass
class Loaders:
    """A run's three loaders."""

    train: BatchLoader
    val: BatchLoader
    test: BatchLoader


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
