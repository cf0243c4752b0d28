"""Checkpoints: the training state as one object with a save/restore pair, and the self-describing trained model.

last.pt holds everything a run needs to go on after a crash, the best weights so far included, in one atomically
written file. best.pt holds the selected weights with all that is needed to use them without the run record.
"""

from __future__ import annotations

import dataclasses
import os
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .config import PROFILES
from .errors import DnicError
from .files import atomic_torch_save
from .models import build_model
from .settings import checkpoint_dir, project_root

TRAIN_FORMAT = "dnic-train/3"  # checkpoints of another format (older code) start the run over
MODEL_FORMAT = "dnic-model/1"


def load_checkpoint(path: str | os.PathLike, map_location: str = "cpu") -> dict:
    """Read a checkpoint with weights_only=True, turning a missing or damaged file into a clear error."""
    path = Path(path)
    if not path.is_file():
        raise DnicError(f"No checkpoint at {path}.", "train the model first (run its notebook) or pass the right path.")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        # torch's own advice ("weights_only=False will likely succeed") would run arbitrary code from the file: leave it out
        detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
        detail = "" if "weights_only" in detail or "Weights only" in detail else f": {detail}"
        raise DnicError(f"The checkpoint {path} is corrupt or not a dnic checkpoint ({type(err).__name__}{detail}).",
                        "delete it and rerun the notebook to train again (or restore it from a good copy).") from None
    if not isinstance(blob, dict):
        raise DnicError(f"The checkpoint {path} is not a dnic checkpoint (it holds a {type(blob).__name__}).", "pass a checkpoint this package wrote.")
    return blob


@dataclass
class Progress:
    """How far a run has come: epochs, their history, the best epoch so far, early-stopping's count and the epoch in progress."""

    epoch: int = 0
    history: list[dict] = field(default_factory=list)
    curve: list[dict] = field(default_factory=list)  # validation points within epochs: images seen, training time, accuracy
    best_acc: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    finished: bool = False
    partial: dict | None = None  # the epoch in progress at a mid-epoch save: its steps done, its sums so far, its shuffle's seed state
    resumes: list[dict] = field(default_factory=list)  # each time a new process went on: the epoch, the step within it, when
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])  # names this training run in its record


@dataclass
class TrainState:
    """Everything training changes, saved and restored as one: the parts' state dicts, random states, progress, best weights."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    generator: torch.Generator  # the training loader's: shuffling and augmentation
    identity: dict  # config, data and model fingerprint: a checkpoint of another identity is never resumed
    progress: Progress = field(default_factory=Progress)
    best_weights: dict[str, torch.Tensor] | None = None

    PARTS = ("model", "optimizer", "scheduler", "scaler")  # objects with state_dict/load_state_dict

    def keep_best(self) -> None:
        """Copy the model's current weights as the best so far."""
        self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    def state_dict(self) -> dict:
        """What save writes: one dict, read back by load_state_dict."""
        cuda = self.generator.device.type == "cuda"
        return {
            "format": TRAIN_FORMAT, "identity": self.identity, "progress": dataclasses.asdict(self.progress),
            "best_weights": self.best_weights, **{name: getattr(self, name).state_dict() for name in self.PARTS},
            "generator": self.generator.get_state(), "rng": torch.get_rng_state(),  # dropout draws from the global generators
            "cuda_rng": torch.cuda.get_rng_state_all() if cuda else [],
        }

    def load_state_dict(self, blob: dict) -> None:
        """Restore every part from a dict that state_dict wrote."""
        for name in self.PARTS:
            getattr(self, name).load_state_dict(blob[name])
        self.generator.set_state(blob["generator"].cpu())
        torch.set_rng_state(blob["rng"].cpu())
        if blob["cuda_rng"]:
            torch.cuda.set_rng_state_all([s.cpu() for s in blob["cuda_rng"]])
        self.progress = Progress(**blob["progress"])
        self.best_weights = blob["best_weights"]

    def save(self, path: Path) -> None:
        """Write the whole state atomically to one file."""
        atomic_torch_save(self.state_dict(), path)

    def restore(self, path: Path, reported_id: str | None = None, notice: Callable[[str], None] = print) -> bool:
        """Continue from path if it holds a state of this identity not yet reported; else say why (one line) and return False."""
        if not path.is_file():
            return False
        try:
            blob = load_checkpoint(path, str(self.generator.device))
        except DnicError:
            aside = path.with_name(path.name + ".corrupt")
            os.replace(path, aside)  # kept for inspection; this run starts over
            notice(f"Checkpoint {shown(path)} is unreadable (moved to {aside.name}); training starts over.")
            return False
        why = mismatch(blob, self.identity)
        progress = blob.get("progress", {})
        if not why and progress.get("finished") and progress.get("run_id") == reported_id:
            why = "holds a finished run that is already reported"  # a rerun of the notebook trains afresh
        if why:
            notice(f"Checkpoint {shown(path)} {why}; training starts over.")
            return False
        self.load_state_dict(blob)
        return True


def shown(path: Path) -> str:
    """A path as notices print it: relative to the project, so executed notebooks hold no machine paths."""
    try:
        return str(Path(path).resolve().relative_to(project_root().resolve()))
    except ValueError:
        return Path(path).name


def mismatch(blob: dict, identity: dict) -> str | None:
    """Why a saved training state cannot be resumed under this identity, or None if it can."""
    if blob.get("format") != TRAIN_FORMAT:
        return "was written by an older version of the code"
    saved = blob.get("identity", {})
    reasons = {"config": "another configuration", "data": "other data", "model": "other model code or shapes"}
    for key, reason in reasons.items():
        if saved.get(key) != identity.get(key):
            return f"was written for {reason}"
    return None


def save_trained(path: Path, weights: dict[str, torch.Tensor], meta: dict) -> None:
    """Write the selected weights with everything needed to use them (architecture, classes, input, normalisation, provenance)."""
    atomic_torch_save({"format": MODEL_FORMAT, **meta, "model": {k: v.detach().cpu() for k, v in weights.items()}}, path)


@dataclass
class Trained:
    """A trained model in eval mode, the metadata it was saved with, and its preprocessing from uint8 images."""

    model: nn.Module
    meta: dict

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (N, C, H, W) or (C, H, W), grey or RGB, into the normalised float batch the model expects."""
        if images.dtype != torch.uint8 or images.ndim not in (3, 4):
            raise DnicError(f"Expected uint8 images shaped (N, C, H, W) or (C, H, W), got {images.dtype} {tuple(images.shape)}.",
                            "pass images as torch.uint8 tensors with channels first.")
        x = (images[None] if images.ndim == 3 else images).float().div(255)
        channels, size = self.meta["in_channels"], self.meta["image_size"]
        if x.shape[1] not in (1, 3):
            raise DnicError(f"Expected 1 (grey) or 3 (RGB) channels, got {x.shape[1]}.", "convert the images to grey or RGB first.")
        if x.shape[1] != channels:  # grey → RGB repeats the channel; RGB → grey takes the luma
            x = x.expand(-1, 3, -1, -1) if channels == 3 else (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        if x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        mean = torch.tensor(self.meta["mean"]).view(1, -1, 1, 1)
        std = torch.tensor(self.meta["std"]).view(1, -1, 1, 1)
        return (x - mean) / std

    @torch.inference_mode()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, classes) for uint8 images."""
        return torch.softmax(self.model(self.preprocess(images)).float(), dim=1)


def load_trained(run_name_or_path: str | os.PathLike, profile: str | None = None) -> Trained:
    """The trained model of a run (its name, e.g. 'mnist-lenet5', or a best.pt path), in eval mode, ready to predict."""
    path = Path(run_name_or_path)
    if not path.is_file():
        name = str(run_name_or_path)
        if not re.fullmatch(r"[\w.-]+", name):
            raise DnicError(f"No trained model file at {path}.", "pass a best.pt path, or a run name such as 'mnist-lenet5'.")
        profiles = [profile] if profile else sorted(PROFILES, key=lambda p: -PROFILES[p].rank)  # the highest profile first
        found = [checkpoint_dir(p, name) / "best.pt" for p in profiles if (checkpoint_dir(p, name) / "best.pt").is_file()]
        if not found:
            where = f"profile {profile!r}" if profile else "any profile"
            raise DnicError(f"No trained model of run {name!r} in {where} (looked for checkpoints/<profile>/{name}/best.pt).",
                            "run the run's notebook first (checkpoints are not in the repository), or pass a best.pt path.")
        path = found[0]
    blob = load_checkpoint(path)
    if blob.get("format") != MODEL_FORMAT:
        raise DnicError(f"{path} is not a trained-model checkpoint of this version (format {blob.get('format')!r}).",
                        "pass checkpoints/<profile>/<run>/best.pt written by the current code, or retrain the run.")
    meta = {k: v for k, v in blob.items() if k != "model"}
    model = build_model(meta["arch"], len(meta["classes"]), meta["in_channels"], meta["image_size"])
    try:
        model.load_state_dict(blob["model"])
    except RuntimeError as err:
        raise DnicError(f"The weights in {path} do not fit the current {meta['arch']} code ({str(err).splitlines()[0]}).",
                        "retrain the run with the current code.") from None
    return Trained(model.eval(), meta)
