"""MobileNetV2 from torchvision's definition, with CIFAR strides for small images."""

from torch import nn
from torchvision.models import mobilenetv2 as tv_mobilenet
from torchvision.ops.misc import Conv2dNormActivation

SUMMARY = (
    "**MobileNetV2** replaces full convolutions with depthwise separable ones: a 3×3 depthwise conv filters "
    "each channel on its own and a 1×1 pointwise conv mixes channels, roughly k² times cheaper than a full "
    "k×k conv. Its inverted residual blocks expand the channels 6× with a 1×1 conv, filter depthwise, then "
    "project back through a linear 1×1 bottleneck, with the shortcut between the narrow ends."
)
LOOK_FOR = (
    "Here its {depthwise_layers} depthwise convolutions do only {depthwise_share:.1%} of the {mflops:,.0f} MFLOPs per "
    "image, and the 1×1 convolutions {pointwise_share:.0%}: in a separable net the pointwise layers carry the cost. "
    "Full 3×3 convolutions in place of each depthwise + 1×1 pair would cost {separable_saving:.1f}× as much."
)

# torchvision's (expansion t, channels c, repeats n, stride s) of each stage, with CIFAR strides.
CIFAR_SETTING = [[1, 16, 1, 1], [6, 24, 2, 1], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]


def mobilenet_v2(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """torchvision's MobileNetV2; below 64 pixels the stem and the second stage keep stride 1."""
    if image_size < 64:
        # CIFAR/MNIST adaptation: ImageNet's strides (stem 2, stage two 2) would take 32×32 down to 1×1; with
        # both set to 1, as in the usual CIFAR MobileNetV2, the last stage works on 4×4 (28 px: 4×4 too).
        model = tv_mobilenet.MobileNetV2(num_classes=num_classes, inverted_residual_setting=CIFAR_SETTING)
        stride = 1
    else:
        model = tv_mobilenet.MobileNetV2(num_classes=num_classes)
        stride = 2
    if image_size < 64 or in_channels != 3:
        model.features[0] = Conv2dNormActivation(in_channels, 32, stride=stride, norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU6)
    return model
