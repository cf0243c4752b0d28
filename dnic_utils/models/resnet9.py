"""ResNet-9: the fast DAWNBench CIFAR-10 network (Myrtle.ai, D. Page, 2018), kept as a speed reference."""

import torch
from torch import nn

SUMMARY = (
    "**ResNet-9** is the fast DAWNBench network: a wide, shallow residual net (prep conv, three stages of "
    "conv + max-pool, with a two-conv residual block after the first and last) and a scaled linear head. "
    "It trades depth for width and few, large layers that keep an accelerator busy, so it reaches high "
    "CIFAR-10 accuracy in very few epochs; it is here as the speed reference."
)
LOOK_FOR = (
    "Here {wide_param_share:.0%} of the parameters sit in the 512-channel layers and {top_kind} layers do "
    "{top_kind_share:.0%} of the {mflops:,.0f} MFLOPs per image: few, wide layers that keep an accelerator busy."
)


def conv_bn(in_ch: int, out_ch: int) -> nn.Sequential:
    """3×3 conv, batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class Residual(nn.Module):
    """x + two conv_bn layers of x."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The residual sum."""
        return x + self.body(x)


class ResNet9(nn.Module):
    """prep 64; 128 + pool + residual; 256 + pool; 512 + pool + residual; global max-pool; linear × 0.125."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32, scale: float = 0.125) -> None:
        super().__init__()
        # Designed for 32×32: three 2×2 pools give 4×4 before the head. The original 4×4 max-pool is adaptive
        # here, so 28×28 (3×3 before the head) works unchanged.
        self.features = nn.Sequential(
            conv_bn(in_channels, 64),
            conv_bn(64, 128), nn.MaxPool2d(2), Residual(128),
            conv_bn(128, 256), nn.MaxPool2d(2),
            conv_bn(256, 512), nn.MaxPool2d(2), Residual(512),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(),
        )
        self.fc = nn.Linear(512, num_classes, bias=False)
        self.scale = scale  # the published head multiplies the logits by 0.125, which tempers early training

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled logits for a batch of images."""
        return self.fc(self.features(x)) * self.scale
