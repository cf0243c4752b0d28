"""A run's transfer parameters applied to its freshly built model: the source's weights copied into the first stages, some frozen.

The source is 'imagenet' (the architecture's ImageNet weights: see sources) or the name of a run of the same profile,
whose selected weights (checkpoints/<profile>/<run>/best.pt) are copied. What was copied from where, with the file's
SHA-256, is the run record's `transfer` entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..checkpoint import load_checkpoint, shown
from ..errors import DnicError
from ..files import file_sha256
from ..settings import checkpoint_dir
from .sources import SOURCES, load_pretrained
from .stages import copy_stages, freeze_stages, run_cut

if TYPE_CHECKING:
    from ..config import RunConfig

IMAGENET = "imagenet"


@dataclass
class Source:
    """The weights a run copies from, where they came from, and the input normalisation they were trained with."""

    state: dict[str, torch.Tensor]
    provenance: dict  # source, title, file, sha256 (and for ImageNet: weights, url)
    mean: tuple[float, ...]
    std: tuple[float, ...]


def load_source(source: str, arch: str, profile: str, num_classes: int) -> Source:
    """The weights named by a run's `source`: the architecture's ImageNet weights, or the selected weights of a run of this profile."""
    if source == IMAGENET:
        if arch not in SOURCES:
            raise DnicError(f"There are no ImageNet weights for the architecture {arch!r}.", f"use `source='{IMAGENET}'` with one of: {', '.join(SOURCES)}.")
        pre = load_pretrained(arch, num_classes)
        info = {k: v for k, v in pre.provenance.items() if k not in ("mean", "std")}
        return Source(pre.model.state_dict(), info, tuple(pre.provenance["mean"]), tuple(pre.provenance["std"]))
    path = checkpoint_dir(profile, source) / "best.pt"
    if not path.is_file():
        raise DnicError(f"No trained weights of the source run {source!r} in profile {profile!r} (looked for {shown(path)}).",
                        f"train that run first (in this profile), or set `source` to another run's name or to '{IMAGENET}'.")
    blob = load_checkpoint(path)
    if blob.get("arch") != arch:
        raise DnicError(f"The source run {source!r} trained {blob.get('arch')!r}, not {arch!r}: its weights do not fit.",
                        f"copy from a run of {arch!r}.")
    info = {"source": source, "title": f"{blob.get('arch_title', arch)} trained on {blob.get('dataset_title', '?')}", "file": shown(path),
            "sha256": file_sha256(path)}
    return Source(blob["model"], info, tuple(blob["mean"]), tuple(blob["std"]))


def apply_transfer(model: nn.Module, cfg: RunConfig, source: Source) -> dict:
    """Copy the first `cut` stages (all but the head when None) from the source and freeze the first `freeze`; return the record's entry."""
    cut = run_cut(model, cfg.cut)
    if cfg.freeze > cut:
        raise DnicError(f"`freeze` {cfg.freeze} is more stages than the {cut} copied: frozen stages must hold copied weights.",
                        f"set `freeze` to at most {cut}.")
    keys = copy_stages(model, source.state, cut)
    frozen = freeze_stages(model, cfg.freeze)
    return {"weights": source.provenance, "cut": cut, "frozen_stages": cfg.freeze, "copied_tensors": len(keys), "frozen_params": frozen,
            "copied_lr": cfg.copied_lr, "labels_per_class": cfg.labels_per_class, "classes": cfg.classes}
