"""Transfer subsets: Yosinski's A/B class splits, k labels per class, and grey digits shaped like CIFAR-10 images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dnic_utils.data import Splits, dataset_info
from dnic_utils.data.subsets import (CLASS_SUBSETS, VEHICLES, as_cifar_shape, class_split, keep_classes, labels_per_class, subset_classes,
                                    transfer_splits)
from dnic_utils.errors import DnicError

CIFAR = dataset_info("cifar10")


@pytest.mark.parametrize("kind", ["random", "vehicles"])
def test_a_class_split_gives_two_disjoint_halves_of_all_classes(kind: str) -> None:
    a, b = class_split(CIFAR, kind)
    assert sorted(a + b) == list(range(10)) and not set(a) & set(b)
    assert class_split(CIFAR, kind) == (a, b)  # fixed


def test_the_random_split_is_alike_on_both_sides_and_the_vehicle_split_is_not() -> None:
    vehicles = {CIFAR.classes.index(c) for c in VEHICLES}
    a, b = class_split(CIFAR, "random")
    assert len(a) == len(b) == 5
    assert len(vehicles & set(a)) == len(vehicles & set(b)) == 2
    assert class_split(CIFAR, "random", seed=1) != (a, b)  # the seed does draw
    a, b = class_split(CIFAR, "vehicles")
    assert set(a) == vehicles and len(b) == 6


def test_bad_class_splits_are_clear_errors() -> None:
    with pytest.raises(DnicError, match="Unknown class split 'halves'") as err:
        class_split(CIFAR, "halves")
    assert "random, vehicles" in err.value.fix
    with pytest.raises(DnicError, match="no vehicle classes"):
        class_split(dataset_info("mnist"), "vehicles")
    a, b = class_split(dataset_info("mnist"), "random")
    assert len(a) == len(b) == 5


def test_keep_classes_relabels_in_the_order_given() -> None:
    y = torch.tensor([0, 1, 2, 3, 9, 8, 1])
    x = torch.arange(7).view(7, 1, 1, 1)
    xs, ys = keep_classes(x, y, (8, 1))
    assert xs.flatten().tolist() == [1, 5, 6] and ys.tolist() == [1, 0, 1]
    with pytest.raises(DnicError, match="each class once"):
        keep_classes(x, y, (1, 1))
    with pytest.raises(DnicError, match="No image"):
        keep_classes(x, y, (5,))


def test_a_label_budget_takes_k_of_every_class_the_same_way_each_time() -> None:
    y = torch.tensor([c for c in range(3) for _ in range(20 + c)])
    idx = labels_per_class(y, 7)
    assert np.bincount(y[idx].numpy()).tolist() == [7, 7, 7]
    assert len(set(idx.tolist())) == 21 and (np.diff(idx) > 0).all()
    assert (labels_per_class(y, 7) == idx).all()
    assert set(labels_per_class(y, 7, seed=1).tolist()) != set(idx.tolist())


@pytest.mark.parametrize("k", [21, 0, -3, 2.5, True])
def test_a_label_budget_above_the_class_size_or_not_whole_is_a_clear_error(k: object) -> None:
    y = torch.tensor([c for c in range(3) for _ in range(20 + c)])
    with pytest.raises(DnicError, match="above the class size: the smallest class here has 20" if k == 21 else "whole number"):
        labels_per_class(y, k)


def test_grey_digits_are_padded_to_32_pixels_and_copied_to_three_channels() -> None:
    x = torch.randint(1, 256, (2, 1, 28, 28), dtype=torch.uint8)
    out = as_cifar_shape(x)
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.uint8
    assert all(torch.equal(out[:, c : c + 1, 2:30, 2:30], x) for c in range(3))
    assert out.sum() == 3 * x.sum()  # the border is zeros
    with pytest.raises(DnicError, match="grey images"):
        as_cifar_shape(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))


def toy_splits(name: str, per_class: int = 6) -> Splits:
    """Splits of a dataset's shape with per_class random images of every class in each part."""
    info = dataset_info(name)
    torch.manual_seed(0)
    parts = []
    for _ in range(3):
        y = torch.arange(10).repeat_interleave(per_class)
        parts += [torch.randint(0, 256, (len(y), info.channels, info.size, info.size), dtype=torch.uint8), y]
    return Splits(info, *parts, (0.5,) * info.channels, (0.25,) * info.channels, {"sha256": "toy"})


def test_transfer_splits_keep_one_half_then_k_labels_per_class() -> None:
    splits = toy_splits("cifar10")
    assert transfer_splits(splits) is splits
    out = transfer_splits(splits, "vehicles:B", per_class=2)
    assert out.classes == tuple(c for c in CIFAR.classes if c not in VEHICLES)
    assert out.sizes() == {"train": 12, "val": 36, "test": 36}  # the budget narrows the training split only
    assert sorted(out.train_y.tolist()) == [c for c in range(6) for _ in range(2)]
    assert out.mean == tuple(out.train_x.double().div(255).mean(dim=(0, 2, 3)).tolist())  # statistics of what remains
    assert [subset_classes(CIFAR, f"random:{h}") for h in "AB"] == list(class_split(CIFAR, "random"))
    with pytest.raises(DnicError, match="Unknown class subset 'random'") as err:
        transfer_splits(splits, "random")
    assert all(name in err.value.fix for name in CLASS_SUBSETS)


def test_transfer_splits_make_grey_digits_rgb_32() -> None:
    out = transfer_splits(toy_splits("mnist"), grey_as_rgb=True)
    assert (out.info.channels, out.info.size) == (3, 32) and out.test_x.shape[1:] == (3, 32, 32) and len(out.mean) == 3
