"""VGG with batch norm, from torchvision's definition, adapted for small images."""

from torch import nn
from torchvision.models import vgg as tv_vgg

SUMMARY = (
    "**VGG** gets depth by stacking 3×3 convolutions: two stacked 3×3 layers see a 5×5 window and three see "
    "7×7, with fewer parameters and more non-linearities than one large filter. Five stages of such stacks, "
    "each followed by 2×2 max-pooling, double the channels as they halve the resolution. Batch norm after "
    "every convolution is what lets a plain 16- or 19-layer stack train from scratch. Watch the parameter "
    "count: almost all of it sits in the late 512-channel stages."
)
LOOK_FOR = (
    "Here {wide_param_share:.0%} of the parameters sit in the 512-channel layers, {top_kind} layers do "
    "{top_kind_share:.0%} of the {mflops:,.0f} MFLOPs per image, and the last convolution works on a "
    "{last_conv_side}×{last_conv_side} grid."
)

# VGG19's defaults for the fit loop's options (dnic_utils.config.RunConfig), chosen on MNIST's validation split in the budget profile
# by benchmarks/recipe.py (benchmarks/RESULTS.md, seed 0). With the profile's SGD (Nesterov, 0.05 per 64 images) the 19-layer plain
# stack started slowly (26% and 37% on the validation slice at the first two of eight points, where VGG16 had 39% and 95%) and
# ended at 98.74%; on a 100-step proxy (12,800 images) SGD reached 18.36% and AdamW (3e-3) 98.38%, and over the whole epoch AdamW
# scored 99.28%. VGG16 keeps the profile's SGD (99.20% on the same split), so the two differ in optimiser as well as depth.
VGG19_RECIPE = {
    "optimizer": "adamw",
}


def _vgg(cfg: str, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """torchvision's VGG-BN of the given configuration, with a small-image head below 64 pixels."""
    model = tv_vgg.VGG(tv_vgg.make_layers(tv_vgg.cfgs[cfg], batch_norm=True), num_classes=num_classes)
    if image_size < 64:
        # CIFAR/MNIST adaptation: the ImageNet head (7×7 pooling into 4096-wide layers, 120M parameters) is
        # replaced by global average pooling and one linear layer, as in the usual CIFAR VGG.
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.classifier = nn.Linear(512, num_classes)
    # MNIST adaptation: below 32 pixels the first convolution zero-pads the image up to 32×32 (as LeNet-5's does), so
    # the last stage runs on 2×2 maps, as for CIFAR-10. Left at 28×28, four poolings reach 1×1, where a padded 3×3
    # convolution uses only its centre tap: 43% of VGG16's parameters would never receive a gradient.
    pad = 1 + max(0, 32 - image_size + 1) // 2
    if in_channels != 3 or pad != 1:  # grey input: one input channel
        model.features[0] = nn.Conv2d(in_channels, 64, kernel_size=3, padding=pad)
        nn.init.kaiming_normal_(model.features[0].weight, mode="fan_out", nonlinearity="relu")  # torchvision's VGG init
        nn.init.zeros_(model.features[0].bias)
    return model


def vgg16(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """VGG16 with batch norm (configuration D)."""
    return _vgg("D", num_classes, in_channels, image_size)


def vgg19(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """VGG19 with batch norm (configuration E)."""
    return _vgg("E", num_classes, in_channels, image_size)
