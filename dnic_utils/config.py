"""Profiles, settings read from the environment, and the validated configuration of one run."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import DnicError


@dataclass(frozen=True)
class Profile:
    """Sizes and epochs of one profile; nothing else differs between profiles."""

    name: str
    rank: int  # a lower rank never overwrites the outputs of a higher one
    train_size: int | None  # images kept from the training split (None: all)
    heavy_train_size: int | None  # the same for architectures the registry marks heavy (ResNet50/101): slow on a CPU
    val_size: int  # images carved from the training set for validation
    test_size: int | None  # images of the test set (None: all)
    epochs: int
    light_epochs: int  # epochs for architectures the registry marks light (LeNet-5): cheap, and they need more passes
    batch_size: int
    patience: int  # early-stopping patience in epochs
    latency_batches: tuple[int, ...]


PROFILES: dict[str, Profile] = {
    "smoke": Profile("smoke", 0, 256, 128, 128, 256, 1, 1, 64, 1, (1, 16)),
    "quick": Profile("quick", 1, 20_000, 5_000, 2_000, None, 1, 8, 64, 2, (1, 256)),
    "full": Profile("full", 2, None, None, 5_000, None, 30, 30, 256, 8, (1, 256)),
}

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine")
AMP_MODES = ("auto", "bf16", "fp16", "off")


def default_device() -> str:
    """'cuda' when a GPU is visible, else 'cpu'."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_profile(profile: str = "auto") -> Profile:
    """The profile to use: DNIC_PROFILE wins, then the argument; 'auto' is full on a GPU, quick on a CPU."""
    name = os.environ.get("DNIC_PROFILE") or profile or "auto"
    if name == "auto":
        name = "full" if torch.cuda.is_available() else "quick"
    if name not in PROFILES:
        raise DnicError(
            f"Unknown profile {name!r}.",
            f"use one of {', '.join(PROFILES)} or 'auto' (parameter `profile` or environment variable DNIC_PROFILE).",
        )
    return PROFILES[name]


def project_root() -> Path:
    """The folder that holds results/, figures/ and notebooks/: DNIC_PROJECT_DIR, else this checkout, else the cwd.

    The cwd fallback is for an installed (non-editable) package, as on Colab, where the notebook's folder is used.
    """
    env = os.environ.get("DNIC_PROJECT_DIR")
    checkout = Path(__file__).resolve().parent.parent
    return Path(env) if env else checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()


def cache_dir() -> Path:
    """Where decoded datasets and checkpoints are cached (DNIC_CACHE_DIR, else ~/.cache/dnic)."""
    env = os.environ.get("DNIC_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "dnic"


def quiet() -> bool:
    """True under CI or the runner, where progress bars would only add noise."""
    return any(os.environ.get(k, "").lower() not in ("", "0", "false") for k in ("CI", "DNIC_QUIET"))


def _positive(name: str, value: object) -> None:
    """Raise unless value is a positive int (None means: take the profile's)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise DnicError(f"Parameter `{name}` must be a positive integer, got {value!r}.", f"set `{name}` to a whole number ≥ 1, or None for the profile's default.")


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run; built by make_config, which validates it."""

    arch: str
    dataset: str
    profile: str
    epochs: int
    batch_size: int
    train_size: int | None
    val_size: int
    test_size: int | None
    patience: int
    optimizer: str = "sgd"
    lr: float = 0.05
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    label_smoothing: float = 0.1
    augment: bool = True
    amp: str = "auto"
    seed: int = 0
    device: str = "cpu"
    flip_tta: bool = False  # average test logits with those of the mirrored images (reported as "flip TTA")
    compile: bool = False  # torch.compile the model (pays off only for long runs on a GPU)
    variant: str = ""  # empty for the profile's defaults, else a short hash of the parameters that differ

    def to_dict(self) -> dict:
        """Plain-dict form for run records."""
        return dataclasses.asdict(self)

    @property
    def run_name(self) -> str:
        """'cifar10-resnet18' for the default settings; a run with other parameters gets its own name and files."""
        return f"{self.dataset}-{self.arch}" + (f"-{self.variant}" if self.variant else "")


def make_config(
    arch: str,
    dataset: str,
    profile: str = "auto",
    epochs: int | None = None,
    batch_size: int | None = None,
    optimizer: str = "sgd",
    lr: float | None = None,
    weight_decay: float = 5e-4,
    schedule: str = "onecycle",
    label_smoothing: float = 0.1,
    augment: bool = True,
    amp: str = "auto",
    seed: int = 0,
    device: str | None = None,
    flip_tta: bool = False,
    compile: bool = False,
) -> RunConfig:
    """Validate the parameters of a notebook or call and merge them with the profile's sizes."""
    from .data import dataset_info
    from .models import model_spec

    prof = resolve_profile(profile)
    spec = model_spec(arch)
    dataset = dataset_info(dataset).key  # 'MNIST' and 'fashion-mnist' name the same records as 'mnist' and 'fashion_mnist'
    _positive("epochs", epochs)
    _positive("batch_size", batch_size)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DnicError(f"Parameter `seed` must be an integer ≥ 0, got {seed!r}.", "set `seed` to 0, 1, 2, …")
    for name, value, allowed in (("optimizer", optimizer, OPTIMIZERS), ("schedule", schedule, SCHEDULES), ("amp", amp, AMP_MODES)):
        if value not in allowed:
            raise DnicError(f"Unknown {name} {value!r}.", f"set `{name}` to one of {', '.join(allowed)}.")
    if lr is not None and (isinstance(lr, bool) or not (isinstance(lr, (int, float)) and 0 < lr < 10)):
        raise DnicError(f"Learning rate `lr` must be in (0, 10), got {lr!r}.", "set `lr` to a small positive number such as 0.05, or None for the default.")
    if not isinstance(label_smoothing, (int, float)) or not 0 <= label_smoothing < 1:
        raise DnicError(f"`label_smoothing` must be a number in [0, 1), got {label_smoothing!r}.", "use a value such as 0.1.")
    if not isinstance(weight_decay, (int, float)) or weight_decay < 0:
        raise DnicError(f"`weight_decay` must be a number ≥ 0, got {weight_decay!r}.", "use a value such as 5e-4.")
    dev = device or default_device()
    if dev != "cpu" and not dev.startswith("cuda"):
        raise DnicError(f"Unknown device {dev!r}.", "use 'cpu', 'cuda' or 'cuda:N', or None to pick automatically.")
    if dev.startswith("cuda") and not torch.cuda.is_available():
        raise DnicError(f"Device {dev!r} was asked for but no GPU is visible.", "leave `device` as None to pick the CPU, or run on a GPU machine.")
    if flip_tta and not dataset_info(dataset).flip:
        raise DnicError(f"Flip test-time augmentation does not suit {dataset_info(dataset).title}: its training never sees mirrored "
                        "images (flips are off for it).", "leave `flip_tta` False for this dataset; it is for datasets trained with flips.")
    given = {"epochs": epochs, "batch_size": batch_size, "optimizer": optimizer, "lr": lr, "weight_decay": weight_decay,
             "schedule": schedule, "label_smoothing": label_smoothing, "augment": augment, "amp": amp, "seed": seed,
             "flip_tta": flip_tta}
    defaults = inspect.signature(make_config).parameters
    changed = {k: v for k, v in given.items() if v != defaults[k].default}
    variant = hashlib.sha1(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8] if changed else ""
    batch = batch_size or prof.batch_size
    # SGD follows the linear scaling rule (0.05 per 64 images; one-cycle's first quarter is the warm-up); AdamW is left as is
    default_lr = 0.05 * batch / 64 if optimizer == "sgd" else 3e-3
    return RunConfig(
        arch=arch,
        dataset=dataset,
        profile=prof.name,
        epochs=epochs or (prof.light_epochs if spec.tier == "light" else prof.epochs),
        batch_size=batch,
        train_size=prof.heavy_train_size if spec.tier == "heavy" else prof.train_size,
        val_size=prof.val_size,
        test_size=prof.test_size,
        patience=prof.patience,
        optimizer=optimizer,
        lr=float(lr or default_lr),
        weight_decay=float(weight_decay),
        schedule=schedule,
        label_smoothing=float(label_smoothing),
        augment=bool(augment),
        amp=amp,
        seed=int(seed),
        device=dev,
        flip_tta=bool(flip_tta),
        compile=bool(compile),
        variant=variant,
    )
