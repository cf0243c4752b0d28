"""Subsets for transfer experiments: Yosinski's A/B class splits, k labels per class, and digits shaped like CIFAR-10 images."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DnicError
from .datasets import DatasetInfo
from .splits import Splits, channel_stats

SUBSET_SEED = 0  # the random class split and the label budgets are the same for every run and seed
VEHICLES = ("airplane", "automobile", "ship", "truck")  # CIFAR-10's man-made classes; the other six are animals
CLASS_SPLITS = ("random", "vehicles")
CLASS_SUBSETS = tuple(f"{kind}:{half}" for kind in CLASS_SPLITS for half in "AB")  # a run's `classes`: one half of a split


def class_split(info: DatasetInfo, kind: str, seed: int = SUBSET_SEED) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Halves A and B of a dataset's classes (sorted labels): 'random' with a fixed seed, or 'vehicles' (A) against animals (B).

    On CIFAR-10 the random halves are drawn within the two kinds (2 of the 4 vehicles and 3 of the 6 animals in each), so
    that both halves are alike, as Yosinski et al.'s random ImageNet halves were; an unconstrained draw can put every
    vehicle in one half (seed 0 does) and so repeat the dissimilar split.
    """
    n = len(info.classes)
    rng = np.random.default_rng(seed)
    vehicles = [info.classes.index(c) for c in VEHICLES if c in info.classes]
    if kind == "random" and len(vehicles) == len(VEHICLES):
        animals = [c for c in range(n) if c not in vehicles]
        a = [*rng.choice(vehicles, len(vehicles) // 2, replace=False), *rng.choice(animals, n // 2 - len(vehicles) // 2, replace=False)]
    elif kind == "random":
        a = rng.permutation(n)[: n // 2]
    elif kind == "vehicles" and len(vehicles) == len(VEHICLES):
        a = vehicles
    elif kind == "vehicles":
        raise DnicError(f"{info.title} has no vehicle classes to split off.", "use the 'vehicles' split on CIFAR-10, or the 'random' split.")
    else:
        raise DnicError(f"Unknown class split {kind!r}.", f"use one of: {', '.join(CLASS_SPLITS)}.")
    a = tuple(sorted(int(c) for c in a))
    return a, tuple(c for c in range(n) if c not in a)


def keep_classes(x: torch.Tensor, y: torch.Tensor, classes: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The images of the given classes, relabelled 0..len(classes)-1 in the order given."""
    classes = list(classes)
    if not classes or len(set(classes)) != len(classes):
        raise DnicError(f"A class subset must name each class once and at least one, got {classes!r}.", "pass distinct class labels, e.g. (0, 1, 8, 9).")
    lookup = torch.full((int(max(int(y.max()), *classes)) + 1,), -1, dtype=torch.long)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))
    keep = lookup[y] >= 0
    if not keep.any():
        raise DnicError(f"No image has one of the labels {classes}.", "name labels that occur in the data.")
    return x[keep], lookup[y[keep]]


def labels_per_class(y: torch.Tensor, k: int, seed: int = SUBSET_SEED) -> np.ndarray:
    """Sorted indices of k images of every class, drawn with a fixed seed (the same k-subset for every run)."""
    counts = torch.bincount(y)
    present = counts[counts > 0]
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise DnicError(f"A label budget must be a whole number of labels per class ≥ 1, got {k!r}.", "use e.g. 10, 100 or 1000 labels per class.")
    if k > int(present.min()):
        raise DnicError(f"A budget of {k:,} labels per class is above the class size: the smallest class here has {int(present.min()):,} images.",
                        f"use at most {int(present.min()):,} labels per class (or the whole training set).")
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(y.numpy() == c), size=k, replace=False) for c in torch.nonzero(counts).flatten().tolist()]
    return np.sort(np.concatenate(picks))


def as_cifar_shape(x: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Grey uint8 images (N, 1, H, W) zero-padded to size×size with the grey copied to 3 channels, for a net trained on CIFAR-10."""
    if x.ndim != 4 or x.shape[1] != 1 or x.shape[-1] > size or x.shape[-2] > size:
        raise DnicError(f"Expected grey images (N, 1, H, W) of at most {size}×{size} pixels, got shape {tuple(x.shape)}.",
                        "pass MNIST or Fashion-MNIST images (28×28, one channel).")
    dh, dw = size - x.shape[-2], size - x.shape[-1]
    return F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2)).expand(-1, 3, -1, -1).contiguous()


def subset_classes(info: DatasetInfo, subset: str) -> tuple[int, ...]:
    """The labels of one half of a class split, named 'random:A', 'vehicles:B', …"""
    kind, _, half = subset.partition(":") if isinstance(subset, str) else ("", "", "")
    if half not in ("A", "B"):
        raise DnicError(f"Unknown class subset {subset!r}.", f"use one of: {', '.join(CLASS_SUBSETS)}.")
    return class_split(info, kind)["AB".index(half)]


def transfer_splits(splits: Splits, classes: str | None = None, per_class: int | None = None, grey_as_rgb: bool = False) -> Splits:
    """A run's splits narrowed to one half of a class split, then to k training labels per class, and grey images made 32×32 RGB.

    The normalisation statistics are those of the training images that remain.
    """
    if not (classes or per_class or grey_as_rgb):
        return splits
    info = splits.info
    parts = {p: (getattr(splits, f"{p}_x"), getattr(splits, f"{p}_y")) for p in ("train", "val", "test")}
    if classes:
        keep = subset_classes(info, classes)
        parts = {p: keep_classes(x, y, keep) for p, (x, y) in parts.items()}
        info = dataclasses.replace(info, classes=tuple(info.classes[c] for c in keep))
    if per_class:
        x, y = parts["train"]
        idx = torch.from_numpy(labels_per_class(y, per_class))
        parts["train"] = (x[idx], y[idx])
    if grey_as_rgb:
        parts = {p: (as_cifar_shape(x), y) for p, (x, y) in parts.items()}
        info = dataclasses.replace(info, channels=3, size=32)
    (train_x, train_y), (val_x, val_y), (test_x, test_y) = parts.values()
    return Splits(info, train_x, train_y, val_x, val_y, test_x, test_y, *channel_stats(train_x), splits.source)
