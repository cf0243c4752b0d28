"""MiniGoogLeNet: the small Inception network for CIFAR (Zhang et al., 2017, "Understanding deep learning requires rethinking generalization")."""

import torch
from torch import nn

SUMMARY = (
    "**MiniGoogLeNet** is the small Inception network used on CIFAR: a conv module (conv, batch norm, ReLU), "
    "Inception modules that concatenate a 1×1 and a 3×3 branch, and downsample modules that concatenate a "
    "stride-2 3×3 conv with a stride-2 max-pool. It keeps the multi-branch idea of GoogLeNet with a "
    "fraction of its parameters."
)
LOOK_FOR = (
    "Here 3×3 convolutions do {k3_share:.0%} of the {mflops:,.0f} MFLOPs per image and the 1×1 branches "
    "{pointwise_share:.0%}; the last modules work on {last_conv_side}×{last_conv_side}."
)


def conv_module(in_ch: int, out_ch: int, kernel: int, stride: int = 1, padding: int = 0) -> nn.Sequential:
    """Conv, batch norm, ReLU."""
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, kernel, stride, padding, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class InceptionModule(nn.Module):
    """A 1×1 branch and a 3×3 branch, concatenated along the channels."""

    def __init__(self, in_ch: int, ch1: int, ch3: int) -> None:
        super().__init__()
        self.branch1 = conv_module(in_ch, ch1, 1)
        self.branch3 = conv_module(in_ch, ch3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Both branches on the same input, concatenated."""
        return torch.cat([self.branch1(x), self.branch3(x)], dim=1)


class DownsampleModule(nn.Module):
    """A stride-2 3×3 conv and a stride-2 3×3 max-pool, concatenated: the grid halves, the channels grow."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = conv_module(in_ch, out_ch, 3, stride=2)
        self.pool = nn.MaxPool2d(3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Strided conv and pooled input, concatenated."""
        return torch.cat([self.conv(x), self.pool(x)], dim=1)


class MiniGoogLeNet(nn.Module):
    """The published layout: conv 96; 2 Inception; downsample; 4 Inception; downsample; 2 Inception; pool; dense."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> None:
        super().__init__()
        # Sized for 32×32 (CIFAR): the unpadded downsamples give 32 → 15 → 7 (28 px: 13 → 6), and an adaptive
        # average pool replaces the original fixed 7×7 pool so that 28×28 MNIST works too.
        self.features = nn.Sequential(
            conv_module(in_channels, 96, 3, padding=1),
            InceptionModule(96, 32, 32), InceptionModule(64, 32, 48), DownsampleModule(80, 80),
            InceptionModule(160, 112, 48), InceptionModule(160, 96, 64), InceptionModule(160, 80, 80),
            InceptionModule(160, 48, 96), DownsampleModule(144, 96),
            InceptionModule(240, 176, 160), InceptionModule(336, 176, 160),
        )
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(336, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of images."""
        return self.classifier(self.features(x))
