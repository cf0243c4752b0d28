"""What the package knows about each dataset: name, shape, classes, canonical sizes and whether flips keep labels."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import DnicError


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


def _plain(name: str) -> str:
    """A name without case, hyphens, underscores or spaces: 'CIFAR-10' and 'cifar10' are the same."""
    return "".join(ch for ch in name.lower() if ch.isalnum())


def dataset_info(name: str) -> DatasetInfo:
    """The DatasetInfo for a name such as 'mnist', 'Fashion-MNIST' or 'CIFAR-10' (case, hyphens and underscores ignored)."""
    found = [info for key, info in DATASETS.items() if isinstance(name, str) and _plain(key) == _plain(name)]
    if not found:
        raise DnicError(f"Unknown dataset {name!r}.", f"use one of: {', '.join(DATASETS)}.")
    return found[0]


def dataset_title(info: DatasetInfo, source: dict) -> str:
    """The dataset's name as the report prints it, naming the lossy JPEG copy when it was used."""
    return f"{info.title} (JPEG q75 copy)" if source.get("lossy") else info.title
