"""Profiles and the configuration of one run: every run parameter is declared once, as a field of RunConfig.

A field's default, its check and its label live together (`param`); the profile fills in the sizes left as None;
the run's name gets a variant hash of every recipe field that differs from the profile's defaults.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .data import dataset_info
from .data.splits import val_size_range
from .data.subsets import CLASS_SUBSETS
from .devices import AMP_MODES, checked_device
from .errors import DnicError
from .models import model_spec


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
    dataset_epochs: Mapping[str, int] = field(default_factory=dict)  # per dataset, epochs for every architecture (light ones too)

    def epochs_for(self, dataset: str, tier: str) -> int:
        """The epochs this profile gives an architecture of a tier on a dataset."""
        return self.dataset_epochs.get(dataset) or (self.light_epochs if tier == "light" else self.epochs)


PROFILES: dict[str, Profile] = {
    p.name: p for p in (
        # smoke: CI's check that every notebook runs, seconds each (ResNet101 evaluates 13 images/s on a slow 2-core CPU)
        Profile(name="smoke", rank=0, train_size=128, heavy_train_size=32, val_size=64, test_size=128, epochs=1, light_epochs=1,
                batch_size=32, patience=1, latency_batches=(1, 16)),
        # quick: the whole report in 30 minutes or less on 2 CPU cores, a demonstration that the pipeline works (heavy nets
        # train on 100 images: ResNet101 trained at 2.4 images/s and evaluated at 13 on an fp32-only 2-core AMD EPYC; latency is
        # timed at batch 16, as six passes at 64 cost the heavy nets half a minute there)
        Profile(name="quick", rank=1, train_size=500, heavy_train_size=100, val_size=128, test_size=256, epochs=1, light_epochs=4,
                batch_size=64, patience=2, latency_batches=(1, 16)),
        # budget: the report's CPU numbers; equal epochs for every architecture of a dataset, on all training images less
        # the validation split. The epochs are the most that fit 10 hours on a 2-core bf16 CPU, as benchmarks/budget.py measures
        # there: on a Xeon with AMX (bf16, torch 2.14) it estimated 8.21 h for every model notebook of the three datasets at two
        # epochs, and three did not fit (results/quick/bench-budget-cpu-intel-r-xeon-r-processor-2-threads-bfloat16.json).
        # An fp32-only CPU takes over twice as long (results/quick/bench-budget-cpu-amd-epyc-2-threads-fp32.json).
        Profile(name="budget", rank=2, train_size=None, heavy_train_size=None, val_size=5_000, test_size=None, epochs=2, light_epochs=2,
                batch_size=128, patience=8, latency_batches=(1, 256), dataset_epochs={"mnist": 2, "fashion_mnist": 2, "cifar10": 2}),
        Profile(name="full", rank=3, train_size=None, heavy_train_size=None, val_size=5_000, test_size=None, epochs=30, light_epochs=30,
                batch_size=256, patience=8, latency_batches=(1, 256)),
    )
}
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine", "triangle", "constant")  # triangle: airbench's linear 0.2× → 1× (at 23%) → 0.07×
TTA_MODES = ("off", "flip", "multiview")  # multiview: the image and 1-pixel shifts of it, each also mirrored where flips keep the label


def tta_views(tta: str, flip: bool) -> int:
    """Forward passes per test image under a test-time augmentation mode (train.tta_logits): what its accuracy costs at inference."""
    return (3 if tta == "multiview" else 1) * (2 if flip and tta != "off" else 1)


def views_label(views: int, tta: str) -> str:
    """A table cell for the test views: '1' for a single pass, else the passes per image and the mode, e.g. '6 (multiview)'."""
    return f"{views} ({tta})" if tta != "off" else "1"


MAX_LR = 10.0  # a learning rate at or above this diverges for every net here: a given or derived one must stay below


def _checked_profile(name: object, source: str) -> str:
    """The name if it is a profile or 'auto', else a clear error naming where it came from."""
    if name != "auto" and (not isinstance(name, str) or name not in PROFILES):
        raise DnicError(f"Unknown profile {name!r} ({source}).", f"use one of {', '.join(PROFILES)} or 'auto'.")
    return name


def resolve_profile(profile: str = "auto") -> Profile:
    """The profile to use: DNIC_PROFILE wins over the argument (saying so when they differ); 'auto' is full on a GPU, quick on a CPU."""
    asked = _checked_profile(profile or "auto", "parameter `profile`")  # an invalid explicit profile is an error even when overridden
    env = os.environ.get("DNIC_PROFILE")
    name = _checked_profile(env, "environment variable DNIC_PROFILE") if env else asked
    if env and asked not in ("auto", env):
        print(f"Profile {env!r} from DNIC_PROFILE overrides the profile {asked!r} given here.")
    if name == "auto":
        import torch

        name = "full" if torch.cuda.is_available() else "quick"
    return PROFILES[name]


# Checks of single values: each raises a DnicError that names the parameter, the bad value and a good one.
Check = Callable[[str, Any], None]


def whole(low: int) -> Check:
    """A whole number ≥ low."""

    def check(name: str, value: Any) -> None:
        """Raise a DnicError unless the value passes."""
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise DnicError(f"Parameter `{name}` must be a whole number ≥ {low}, got {value!r}.", f"set `{name}` to {low}, {low + 1}, …")

    return check


def number(low: float, high: float, *, low_open: bool = False) -> Check:
    """A real number in [low, high), or (low, high) when low_open."""

    def check(name: str, value: Any) -> None:
        """Raise a DnicError unless the value passes."""
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (low < value if low_open else low <= value) and value < high
        if not ok:
            interval = f"{'(' if low_open else '['}{low:g}, {high:g})"
            raise DnicError(f"Parameter `{name}` must be a number in {interval}, got {value!r}.", f"set `{name}` to a value in {interval}.")

    return check


def one_of(options: tuple[str, ...]) -> Check:
    """One of a few names."""

    def check(name: str, value: Any) -> None:
        """Raise a DnicError unless the value passes."""
        if value not in options:
            raise DnicError(f"Unknown {name} {value!r}.", f"set `{name}` to one of {', '.join(options)}.")

    return check


def word(name: str, value: Any) -> None:
    """A name such as a run's: letters, digits, '_', '-' and '.'."""
    if not isinstance(value, str) or not value or not all(ch.isalnum() or ch in "_-." for ch in value):
        raise DnicError(f"Parameter `{name}` must be a name (letters, digits, '_', '-', '.'), got {value!r}.",
                        f"set `{name}` to e.g. 'imagenet' or a run name such as 'cifar10-fastnet'.")


def flag(name: str, value: Any) -> None:
    """True or False."""
    if not isinstance(value, bool):
        raise DnicError(f"Parameter `{name}` must be True or False, got {value!r}.", f"set `{name}` to True or False.")


def optional(check: Check) -> Check:
    """None (the profile's or the derived value), or what `check` accepts."""

    def wrapped(name: str, value: Any) -> None:
        """Let None through; check anything else."""
        if value is not None:
            check(name, value)

    return wrapped


def param(default: Any, check: Check, label: str, *, recipe: bool = True, per_arch: bool = False, quiet: bool = False,
          sized: bool = False) -> Any:
    """A run parameter: its default, its check and its label in the config line; recipe=False keeps it out of the run's name.

    per_arch=True: the field's value is None until resolved, then the architecture's registry recipe or else this default.
    quiet=True: the config line names it only when it differs from the default (options of a few studies, e.g. transfer).
    sized=True: the profile or the run decides it (sizes, epochs, the rate derived from the batch, the seed), so texts that
    compare training recipes leave it out.
    """
    meta = {"label": label, "recipe": recipe, "quiet": quiet, "sized": sized}
    if per_arch:
        return field(default=None, metadata={**meta, "check": optional(check), "default": default})
    return field(default=default, metadata={**meta, "check": check})


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run; None sizes are filled in from the profile, and every field is checked."""

    arch: str
    dataset: str
    profile: str
    epochs: int | None = param(None, optional(whole(1)), "up to {} epoch(s)", sized=True)
    batch_size: int | None = param(None, optional(whole(1)), "batch {}", sized=True)
    train_size: int | None = param(None, optional(whole(1)), "{} training images", sized=True)  # None after resolution: all
    val_size: int | None = param(None, optional(whole(1)), "{} validation images", sized=True)
    test_size: int | None = param(None, optional(whole(1)), "{} test images", sized=True)
    patience: int | None = param(None, optional(whole(1)), "early-stopping patience {}", sized=True)
    optimizer: str = param("sgd", one_of(OPTIMIZERS), "optimizer {}", per_arch=True)
    lr: float | None = param(None, optional(number(0, MAX_LR, low_open=True)), "peak learning rate {:g}", sized=True)  # None: lr_per_64 scaled to the batch
    lr_per_64: float = param(0.05, number(0, MAX_LR, low_open=True), "SGD learning rate {:g} per 64 images", per_arch=True, quiet=True)
    momentum: float = param(0.9, number(0, 1, low_open=True), "momentum {:g}", per_arch=True, quiet=True)  # Nesterov; one-cycle cycles it 0.95 → 0.85 → 0.95 instead
    weight_decay: float = param(5e-4, number(0, 1), "weight decay {:g}", per_arch=True)
    schedule: str = param("onecycle", one_of(SCHEDULES), "{} schedule", per_arch=True)
    bias_lr: float = param(1.0, number(0, 1000, low_open=True), "bias and norm learning rate ×{:g}", per_arch=True)
    bias_decay: bool = param(False, flag, "biases and norms decayed as much per step as weights {}", per_arch=True, quiet=True)
    lookahead: bool = param(False, flag, "Lookahead {}", per_arch=True)  # airbench's schedule (dnic_utils.train.lookahead_keep)
    label_smoothing: float = param(0.1, number(0, 1), "label smoothing {:g}", per_arch=True)
    augment: bool = param(True, flag, "augmentation {}")
    translate: int | None = param(None, optional(whole(0)), "translation ±{} px")  # None: the architecture's, else 2 px on 28×28 and 4 on 32×32
    rotation: float = param(10.0, number(0, 180), "rotation ±{:g}°", per_arch=True)
    alternate_flips: bool = param(False, flag, "alternating flips {}", per_arch=True)  # mirror each image in every other epoch, not at random
    amp: str = param("auto", one_of(AMP_MODES), "mixed precision {}")
    seed: int = param(0, whole(0), "seed {}", sized=True)
    tta: str = param("off", one_of(TTA_MODES), "test-time augmentation {}", per_arch=True)  # averages the test logits over views
    # transfer learning (notebook 40): weights copied into the net's first stages, some of them frozen, and narrower data
    source: str | None = param(None, optional(word), "weights copied from {}", quiet=True)  # 'imagenet' (the net's ImageNet weights) or a run of this profile
    cut: int | None = param(None, optional(whole(0)), "first {} stage(s) copied", quiet=True)  # None with a source: every stage but the head
    freeze: int = param(0, whole(0), "first {} stage(s) frozen", quiet=True)  # at most the stages copied
    copied_lr: float = param(1.0, number(0, 1000, low_open=True), "copied stages' learning rate ×{:g}", quiet=True)
    classes: str | None = param(None, optional(one_of(CLASS_SUBSETS)), "classes {}", quiet=True)  # one half of a class split, e.g. 'vehicles:A'
    labels_per_class: int | None = param(None, optional(whole(1)), "{} training labels per class", quiet=True)
    grey_as_rgb: bool = param(False, flag, "grey images padded to 32×32 RGB {}", quiet=True)
    image_size: int | None = param(None, optional(whole(8)), "inputs resized to {} px", quiet=True)  # None: the dataset's size
    device: str | None = param(None, lambda name, value: checked_device(value), "device {}", recipe=False)  # None: a GPU if visible
    compile: bool = param(False, flag, "torch.compile {}", recipe=False)  # pays off only for long runs on a GPU

    def __post_init__(self) -> None:
        """Check every field, then fill in what the profile and the architecture decide."""
        spec = model_spec(self.arch)
        info = dataset_info(self.dataset)
        _checked_profile(self.profile, "parameter `profile`")
        if self.profile == "auto":
            raise DnicError("RunConfig needs a concrete profile, got 'auto'.", "build it with make_config, which resolves 'auto'.")
        for f in dataclasses.fields(self):
            if "check" in f.metadata:
                f.metadata["check"](f.name, getattr(self, f.name))
        if self.source is None and (self.cut is not None or self.freeze or self.copied_lr != 1):
            raise DnicError("`cut`, `freeze` and `copied_lr` act on weights copied from a source, and no `source` is set.",
                            "set `source` ('imagenet' or the name of a run of this profile), or leave them at their defaults.")
        prof = PROFILES[self.profile]
        per_arch = {f.name: spec.recipe.get(f.name, f.metadata["default"]) for f in dataclasses.fields(self)
                    if "default" in f.metadata and getattr(self, f.name) is None}
        fill = {
            **per_arch,
            "translate": self.translate if self.translate is not None else spec.recipe.get("translate", 2 if info.size <= 28 else 4),
            "dataset": info.key,  # 'MNIST' and 'fashion-mnist' name the same records as 'mnist' and 'fashion_mnist'
            "device": checked_device(self.device),
            "epochs": self.epochs or prof.epochs_for(info.key, spec.tier),
            "batch_size": self.batch_size or prof.batch_size,
            "train_size": self.train_size or (prof.heavy_train_size if spec.tier == "heavy" else prof.train_size),
            "val_size": self.val_size or prof.val_size,
            "test_size": self.test_size or prof.test_size,
            "patience": self.patience or prof.patience,
        }
        for name, value in fill.items():
            object.__setattr__(self, name, value)
        for name in per_arch:  # the registry's recipe passes the same checks as a value given here
            self.__dataclass_fields__[name].metadata["check"](name, getattr(self, name))
        if self.tta == "flip" and not info.flip:
            raise DnicError(f"Flip test-time augmentation does not suit {info.title}: its training never sees mirrored images "
                            "(flips are off for it).", "set `tta` to 'off' or 'multiview' (which mirrors only where flips keep the label).")
        low, high = val_size_range(info, info.sizes[0])
        if not low <= self.val_size <= high:
            raise DnicError(f"`val_size` {self.val_size:,} does not fit {info.title}'s {info.sizes[0]:,} training images, from which the "
                            "validation split is carved (at least one image per class, and ten per class left for training).",
                            f"set `val_size` between {low} and {high:,} (or None for the profile's {prof.val_size:,}).")
        available = min(self.train_size or info.sizes[0], info.sizes[0] - self.val_size)
        if self.batch_size > available:
            raise DnicError(f"`batch_size` {self.batch_size:,} is larger than the {available:,} training images of this run.",
                            f"set `batch_size` to at most {available:,} (or None for the profile's {prof.batch_size}).")
        if self.lr is None:
            # SGD follows the linear scaling rule (lr_per_64 per 64 images; the schedules warm up); AdamW is left as is
            derived = self.lr_per_64 * self.batch_size / 64 if self.optimizer == "sgd" else 3e-3
            if derived >= MAX_LR:
                raise DnicError(f"The learning rate derived for batch {self.batch_size:,} ({self.lr_per_64:g} per 64 images) is {derived:g}, "
                                f"at or above {MAX_LR:g}, where training diverges.", "set `lr` explicitly, or use a smaller `batch_size`.")
            object.__setattr__(self, "lr", derived)
        object.__setattr__(self, "lr", float(self.lr))
        for name in ("lr_per_64", "momentum", "weight_decay", "label_smoothing", "bias_lr", "rotation"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @property
    def variant(self) -> str:
        """'' for the profile's defaults, else a short hash of the recipe fields that differ from them."""
        base = RunConfig(self.arch, self.dataset, self.profile, device=self.device)
        changed = {f.name: getattr(self, f.name) for f in recipe_fields() if getattr(self, f.name) != getattr(base, f.name)}
        return hashlib.sha1(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8] if changed else ""

    @property
    def run_name(self) -> str:
        """'cifar10-resnet18' for the default settings; a run with other parameters gets its own name and files."""
        return f"{self.dataset}-{self.arch}" + (f"-{self.variant}" if self.variant else "")

    def to_dict(self) -> dict:
        """Plain-dict form for run records and checkpoints, with the variant."""
        return {**dataclasses.asdict(self), "variant": self.variant}


def recipe_fields() -> list[dataclasses.Field]:
    """The fields that define what is trained (all but device and compile): a change to one gives the run another name."""
    return [f for f in dataclasses.fields(RunConfig) if f.metadata.get("recipe")]


def training_recipe_fields() -> list[str]:
    """The recipe fields that say how a net is trained (optimizer, schedule, augmentation, …): not sizes, epochs, rate or seed."""
    return [f.name for f in recipe_fields() if not f.metadata["sized"]]


def same_recipe(record: dict, cfg: RunConfig) -> bool:
    """True when a record was trained with exactly this configuration's recipe (every field that names a run, sizes and seed included)."""
    wanted = cfg.to_dict()
    return all(record["config"].get(f.name) == wanted[f.name] for f in recipe_fields())


def field_default(f: dataclasses.Field) -> Any:
    """The value a field takes when nothing sets it: its declared default (for a per-architecture field, where the registry gives none)."""
    return f.metadata.get("default", f.default)


def quiet_default(name: str, value: Any) -> bool:
    """True when `name` is a quiet option holding its generic default (not an architecture's registry value): texts about a run leave it out."""
    f = RunConfig.__dataclass_fields__.get(name)
    return f is not None and bool(f.metadata.get("quiet")) and value == field_default(f)


PARAMETERS = tuple(f.name for f in dataclasses.fields(RunConfig))


def make_config(arch: str, dataset: str, profile: str = "auto", **params: Any) -> RunConfig:
    """The checked configuration of one run: the profile resolved (DNIC_PROFILE wins), then RunConfig's fields."""
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise DnicError(f"Unknown run parameter(s) {', '.join(unknown)}.", f"use the names RunConfig declares: {', '.join(PARAMETERS[3:])}.")
    return RunConfig(arch, dataset, resolve_profile(profile).name, **params)


def from_parameters(namespace: Mapping[str, Any]) -> RunConfig:
    """make_config from a notebook's parameters: every name of the namespace that RunConfig declares."""
    return make_config(**{k: namespace[k] for k in PARAMETERS if k in namespace})
