"""ImageNet networks as staged nets: torchvision's ResNet and VGG cut into the stages the transfer study copies and freezes.

They are not in the registry (which gets model notebooks): the transfer study builds them by name, and
`dnic_utils.transfer` fills their stages with ImageNet weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torchvision
from torch import nn

from ..errors import DnicError

SUMMARY = (
    "An **ImageNet-pretrained network** used as a source of features: its stages are copied from weights trained on "
    "ImageNet's 1.28 million images, and only a new head (or the last stages too) is trained on the target data."
)
LOOK_FOR = "It has {params:,} parameters and costs {mflops:,.0f} MFLOPs per image at this input size."


class StagedNet(nn.Sequential):
    """A net run as a sequence of stages, which are its children in order; the last one is the head."""

    @property
    def stages(self) -> list[nn.Module]:
        """The stages, in order: the boundaries at which the net can be cut."""
        return list(self)


def staged_resnet(tv: nn.Module, num_classes: int) -> StagedNet:
    """A torchvision ResNet as stem, layer1-4 and a new pooled linear head."""
    stem = nn.Sequential(tv.conv1, tv.bn1, tv.relu, tv.maxpool)
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(tv.fc.in_features, num_classes))
    return StagedNet(stem, tv.layer1, tv.layer2, tv.layer3, tv.layer4, head)


def staged_vgg(tv: nn.Module, num_classes: int) -> StagedNet:
    """A torchvision VGG as its five conv blocks (each ending in its max-pool), fc6-fc7 as one stage, and a new linear head."""
    blocks, block = [], []
    for layer in tv.features:
        block.append(layer)
        if isinstance(layer, nn.MaxPool2d):
            blocks.append(nn.Sequential(*block))
            block = []
    fc = nn.Sequential(tv.avgpool, nn.Flatten(), *tv.classifier[:-1])
    return StagedNet(*blocks, fc, nn.Linear(tv.classifier[-1].in_features, num_classes))


STAGED = {"resnet18": staged_resnet, "resnet50": staged_resnet, "vgg16": staged_vgg}  # torchvision name → its staging


def torchvision_staged(name: str, tv: nn.Module | None = None, num_classes: int = 1000) -> StagedNet:
    """torchvision's `name` (given, or built with random weights) as a staged net with a new head for num_classes."""
    return STAGED[name](tv if tv is not None else torchvision.models.get_model(name, weights=None), num_classes)



def builder(name: str) -> Callable[[int, int, int], StagedNet]:
    """A registry-style builder (num_classes, in_channels, image_size) of torchvision's `name`, staged, with random weights."""

    def build(num_classes: int, in_channels: int, image_size: int) -> StagedNet:
        """The staged net; ImageNet nets take RGB images."""
        if in_channels != 3:
            raise DnicError(f"The ImageNet {name} takes RGB images, got {in_channels} channel(s).", "copy grey images to 3 channels first.")
        return torchvision_staged(name, num_classes=num_classes)

    return build
