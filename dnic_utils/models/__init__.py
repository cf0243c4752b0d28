"""The registry that maps architecture names to builders, and helpers that measure a model's cost."""

from __future__ import annotations

import hashlib
import inspect
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..errors import DnicError
from . import efficientnet_lite, fastnet, googlenet, imagenet, inception, lenet, minigooglenet, mobilenet, resnet, resnet9, vgg, weightedsum


@dataclass(frozen=True)
class ModelSpec:
    """One registered architecture: its display name, family, builder and the principle it illustrates."""

    title: str
    family: str
    builder: Callable[[int, int, int], nn.Module]  # (num_classes, in_channels, image_size) -> model
    summary: str  # the principle the architecture illustrates
    look_for: str  # what to look for, formatted with anatomy.stats of the built model
    min_size: int = 16
    tier: Literal["light", "standard", "heavy"] = "standard"  # 'light': profiles give it their light_epochs; 'heavy': their heavy_train_size
    describe_trained: Callable[[nn.Module, torch.Tensor], str] | None = None  # optional: Markdown on what the trained net does with a validation batch
    init_from_data: Callable[[nn.Module, torch.Tensor], None] | None = None  # optional: set weights from normalised training images before training
    recipe: Mapping[str, Any] = field(default_factory=dict)  # the architecture's own defaults for RunConfig's per-architecture options


REGISTRY: dict[str, ModelSpec] = {
    "lenet5": ModelSpec("LeNet-5", "LeNet", lenet.LeNet5, lenet.SUMMARY, lenet.LOOK_FOR, tier="light", recipe=lenet.RECIPE),
    "vgg16": ModelSpec("VGG16", "VGG", vgg.vgg16, vgg.SUMMARY, vgg.LOOK_FOR),
    "vgg19": ModelSpec("VGG19", "VGG", vgg.vgg19, vgg.SUMMARY, vgg.LOOK_FOR, recipe=vgg.VGG19_RECIPE),
    "resnet18": ModelSpec("ResNet18", "ResNet", resnet.resnet18, resnet.SUMMARY, resnet.LOOK_FOR),
    "resnet50": ModelSpec("ResNet50", "ResNet", resnet.resnet50, resnet.SUMMARY, resnet.LOOK_FOR, tier="heavy",
                            recipe=resnet.BOTTLENECK_RECIPE),
    "resnet101": ModelSpec("ResNet101", "ResNet", resnet.resnet101, resnet.SUMMARY, resnet.LOOK_FOR, tier="heavy",
                             recipe=resnet.BOTTLENECK_RECIPE),
    "resnet9": ModelSpec("ResNet-9", "ResNet", resnet9.ResNet9, resnet9.SUMMARY, resnet9.LOOK_FOR, min_size=8),
    "googlenet": ModelSpec("GoogLeNet", "Inception", googlenet.googlenet, googlenet.SUMMARY, googlenet.LOOK_FOR),
    "minigooglenet": ModelSpec("MiniGoogLeNet", "Inception", minigooglenet.MiniGoogLeNet, minigooglenet.SUMMARY, minigooglenet.LOOK_FOR),
    "inception_v3": ModelSpec("InceptionV3", "Inception", inception.inception_v3, inception.SUMMARY, inception.LOOK_FOR,
                              recipe=inception.RECIPE),
    "mobilenet_v2": ModelSpec("MobileNetV2", "MobileNet", mobilenet.mobilenet_v2, mobilenet.SUMMARY, mobilenet.LOOK_FOR),
    "weightedsumnet": ModelSpec("WeightedSumNet", "WeightedSumNet", weightedsum.weighted_sum_net, weightedsum.SUMMARY, weightedsum.LOOK_FOR, min_size=8,
                                 describe_trained=weightedsum.describe_branch_weights),
    "weightedsumnet_improved": ModelSpec("WeightedSumNet-Improved", "WeightedSumNet", weightedsum.weighted_sum_net_improved, weightedsum.SUMMARY,
                                         weightedsum.LOOK_FOR, describe_trained=weightedsum.describe_branch_weights),
    "fastnet": ModelSpec("FastNet", "FastNet", fastnet.FastNet, fastnet.SUMMARY, fastnet.LOOK_FOR, init_from_data=fastnet.whiten,
                         recipe=fastnet.RECIPE),
}


# ImageNet networks for the transfer study (notebook 40): built by name like the registry's, but not in it (no model notebooks).
# dnic_utils.transfer.sources holds their ImageNet weights under the same names.
IMAGENET_NETS: dict[str, ModelSpec] = {
    "efficientnet_lite0": ModelSpec("EfficientNet-Lite0", "EfficientNet", efficientnet_lite.efficientnet_lite0, efficientnet_lite.SUMMARY,
                                    imagenet.LOOK_FOR, min_size=32),
    **{f"imagenet_{name}": ModelSpec(f"{title} (ImageNet)", family, imagenet.builder(name), imagenet.SUMMARY, imagenet.LOOK_FOR, min_size=32)
       for name, title, family in (("resnet18", "ResNet18", "ResNet"), ("resnet50", "ResNet50", "ResNet"), ("vgg16", "VGG16", "VGG"))},
}


def model_spec(name: str) -> ModelSpec:
    """The registry entry (or ImageNet network) for a name, or a clear error listing the valid names."""
    if not isinstance(name, str) or name not in {**REGISTRY, **IMAGENET_NETS}:
        raise DnicError(f"Unknown architecture {name!r}.", f"use one of: {', '.join(REGISTRY)} (or for transfer: {', '.join(IMAGENET_NETS)}).")
    return REGISTRY.get(name) or IMAGENET_NETS[name]


def build_model(name: str, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """Build a registered architecture for the given classes, input channels and square input size."""
    spec = model_spec(name)
    for label, value in (("num_classes", num_classes), ("in_channels", in_channels), ("image_size", image_size)):
        if not isinstance(value, int) or value <= 0:
            raise DnicError(f"`{label}` must be a positive integer, got {value!r}.", f"pass a whole number ≥ 1 as `{label}`.")
    if image_size < spec.min_size:
        raise DnicError(
            f"{spec.title} needs inputs of at least {spec.min_size}×{spec.min_size}; got {image_size}×{image_size}.",
            f"upsample the input (image_size ≥ {spec.min_size}) or pick another architecture.",
        )
    return spec.builder(num_classes, in_channels, image_size)


def model_size(model: nn.Module) -> dict:
    """Parameter counts and the size in MB (10^6 bytes) of the weights and buffers."""
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    nbytes = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])
    return {"params": params, "trainable_params": trainable, "size_mb": nbytes / 1e6}


def count_flops(model: nn.Module, in_channels: int, image_size: int) -> int:
    """Forward FLOPs for one image (a multiply-add counts as two), measured with torch.utils.flop_counter."""
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, in_channels, image_size, image_size, device=param.device, dtype=param.dtype))
    model.train(was_training)
    return int(counter.get_total_flops())


def model_cost(arch: str, num_classes: int, in_channels: int, image_size: int) -> dict:
    """Parameters, size in MB and forward FLOPs per image of an architecture, measured on the CPU."""
    model = build_model(arch, num_classes, in_channels, image_size)
    return {**model_size(model), "flops": count_flops(model, in_channels, image_size)}


def model_fingerprint(arch: str, model: nn.Module) -> str:
    """A hash of the model's parameter and buffer names and shapes and of its builder's source file.

    A checkpoint records it: a checkpoint written by other model code, even one whose shapes still fit, is not resumed.
    """
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(f"{name}:{tuple(tensor.shape)};".encode())
    h.update(inspect.getsource(sys.modules[model_spec(arch).builder.__module__]).encode())
    return h.hexdigest()[:16]
