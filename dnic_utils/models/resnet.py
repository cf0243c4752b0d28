"""ResNets from torchvision's definitions, with a CIFAR-style stem for small images."""

from collections.abc import Callable

from torch import nn
from torchvision import models as tvm

SUMMARY = (
    "**ResNet** adds identity shortcuts: each block learns a residual F(x) and outputs F(x) + x, so gradients "
    "reach early layers unchanged and a deeper network can always fall back to the identity. ResNet18 stacks "
    "basic blocks (two 3×3 convs); ResNet50 and ResNet101 use bottleneck blocks (1×1 reduce, 3×3, 1×1 expand) "
    "so that depth costs fewer FLOPs per layer. Stages halve the resolution and double the channels; global "
    "average pooling replaces VGG's large dense layers, so nearly all the parameters sit in the convolutions, and depth, "
    "not the head, is what makes ResNet50 and ResNet101 large."
)
LOOK_FOR = (
    "Here 3×3 convolutions do {k3_share:.0%} of the {mflops:,.0f} MFLOPs per image and 1×1 convolutions (bottleneck "
    "reductions and expansions, projection shortcuts) {pointwise_share:.0%}; the first convolution "
    "outputs {first_side}×{first_side} and the last stage works on {last_conv_side}×{last_conv_side}."
)


# ResNet50's and ResNet101's defaults for the fit loop's options (dnic_utils.config.RunConfig), chosen on MNIST's validation split in
# the budget profile by benchmarks/recipe.py (benchmarks/RESULTS.md, seed 0, the --tag proxy records): on a 100-step proxy (12,800
# images) the profile's SGD (Nesterov, 0.05 per 64 images) reached 50.68% (ResNet50) and 55.10% (ResNet101), AdamW (3e-3) 96.16%
# and 96.66%, as it did for InceptionV3 and VGG19. ResNet18 keeps the profile's SGD, so the ResNets differ in optimiser as well as
# depth.
BOTTLENECK_RECIPE = {
    "optimizer": "adamw",
}


def _resnet(factory: Callable[..., nn.Module], num_classes: int, in_channels: int, image_size: int, zero_init: bool = False) -> nn.Module:
    """A torchvision ResNet; below 64 pixels the stem becomes a stride-1 3×3 conv without max-pooling."""
    model = factory(num_classes=num_classes, zero_init_residual=zero_init)
    if image_size < 64:
        # CIFAR/MNIST adaptation: the ImageNet stem (7×7 stride 2 + max-pool) would shrink 32×32 to 8×8 before
        # the first block; a 3×3 stride-1 stem keeps the full resolution, as in He et al.'s CIFAR experiments.
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def resnet18(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """ResNet18 (basic blocks, 2-2-2-2)."""
    return _resnet(tvm.resnet18, num_classes, in_channels, image_size)


def resnet50(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """ResNet50 (bottleneck blocks, 3-4-6-3)."""
    # Bottleneck nets start each residual branch at zero (its last batch norm's scale), so that every block starts as
    # the identity (Goyal et al., 2017): with torchvision's default init they diverged in the quick profile's short
    # schedule (training loss 4.3, 13% on MNIST). ResNet18 keeps the default, which learns faster in short runs.
    return _resnet(tvm.resnet50, num_classes, in_channels, image_size, zero_init=True)


def resnet101(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """ResNet101 (bottleneck blocks, 3-4-23-3)."""
    return _resnet(tvm.resnet101, num_classes, in_channels, image_size, zero_init=True)  # as ResNet50
