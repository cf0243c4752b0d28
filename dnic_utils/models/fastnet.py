"""FastNet: an airbench94-style network (Keller Jordan, arXiv 2404.00498), written from the paper's description.

A frozen 2×2 patch-whitening convolution computed from the training images, three conv groups of width 64, 256 and
256 (conv, max-pool, batch norm, GELU, conv, batch norm, GELU), a global max-pool and a scaled linear head. Its recipe
(label smoothing 0.2, Lookahead, a raised bias learning rate, alternating flips, 2-pixel translation and multi-view
test-time augmentation) lives in the registry entry as defaults of the one fit loop's options.
"""

from __future__ import annotations

import torch
from torch import nn

SUMMARY = (
    "**FastNet** follows airbench94 (Jordan, 2024), the fastest known CIFAR-10 trainer to 94%: the first layer is a "
    "frozen 2×2 convolution that *whitens* image patches (its filters are the patches' principal components, scaled to "
    "unit variance, computed from the training images before training), followed by only three conv groups and a "
    "max-pooled linear head. The recipe matters as much as the net: label smoothing 0.2, Lookahead, a raised learning "
    "rate for biases, alternating flips, 2-pixel translation and multi-view test-time augmentation."
)
LOOK_FOR = (
    "Its {layers} layers do {mflops:,.0f} MFLOPs per image, {top_kind} layers {top_kind_share:.0%} of them, and the last "
    "convolutions work on {last_conv_side}×{last_conv_side} maps: a shallow, wide net whose few layers keep the hardware busy."
)
WIDTHS = (64, 256, 256)
WHITEN_EPS = 5e-4  # added to the patch covariance's eigenvalues before the inverse square root
# Eigenvalues below this share of the largest carry no signal: grey images shown as RGB (transfer from CIFAR-10) have identical
# channels, so 8 of their 12 patch directions have variance zero. A channel that constant would meet the groups' batch norm
# (eps 1e-12) and blow its gradients up to NaN; such directions get the strongest components' filters again instead.
DEGENERATE = 1e-9
LOGIT_SCALE = 1 / 9  # airbench scales the head's outputs down: a temperature that suits label smoothing 0.2
BN_MOMENTUM, BN_EPS = 0.4, 1e-12  # airbench's: the running statistics move 40% of the way per step (PyTorch's convention)


def conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    """A bias-free 3×3 conv whose first in_ch filters start as the identity (airbench's Dirac init) and the rest at random."""
    conv = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:min(in_ch, out_ch)])
    return conv


class ConvGroup(nn.Sequential):
    """conv 3×3, max-pool 2, BN, GELU, conv 3×3, BN, GELU; the BN scales stay 1 and only their shifts learn (airbench)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        norms = [nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=BN_MOMENTUM) for _ in range(2)]
        for norm in norms:
            norm.weight.requires_grad_(False)
        super().__init__(conv3x3(in_ch, out_ch), nn.MaxPool2d(2), norms[0], nn.GELU(), conv3x3(out_ch, out_ch), norms[1], nn.GELU())


class Head(nn.Module):
    """Global max-pool, a bias-free linear layer, and the fixed logit scale."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(width, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from the last group's feature maps."""
        return self.linear(torch.amax(x, dim=(2, 3))) * LOGIT_SCALE


class FastNet(nn.Sequential):
    """Whitening stem, three conv groups and a head; its stages are its children, in order."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> None:
        # Small-image adaptation: none needed. It was designed for 32×32; on 28×28 the 2×2 stem and three max-pools give 3×3
        # maps (27→13→6→3) before the global max-pool, as on 32×32 (31→15→7→3).
        whiten_width = 2 * in_channels * 4  # each principal component of the 2×2 patches, and its negation
        stem = nn.Sequential(nn.Conv2d(in_channels, whiten_width, 2, bias=True), nn.GELU())
        # Frozen: the filters are set from the data by `whiten`. airbench zeroes the bias and trains it in its first 3 epochs
        # only, at the weights' rate; here it stays at zero, as the bias group's 64× rate would not suit it.
        nn.init.zeros_(stem[0].bias)
        stem.requires_grad_(False)
        groups = [ConvGroup(a, b) for a, b in zip((whiten_width, *WIDTHS[:-1]), WIDTHS)]
        super().__init__(stem, *groups, Head(WIDTHS[-1], num_classes))
        self.image_size = image_size

    @property
    def stages(self) -> list[nn.Module]:
        """The stem, the three groups and the head: the boundaries at which the net can be cut."""
        return list(self)


@torch.no_grad()
def whiten(model: nn.Module, images: torch.Tensor) -> None:
    """Set the frozen stem's filters to the ZCA-like whitening of 2×2 patches of (normalised) training images."""
    conv = model[0][0]
    c = images.shape[1]
    patches = images.float().unfold(2, 2, 1).unfold(3, 2, 1)  # (N, C, H-1, W-1, 2, 2)
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * 4).double()
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov(patches.T))  # ascending
    filters = eigenvectors.T / (eigenvalues + WHITEN_EPS).sqrt()[:, None]
    dead = eigenvalues <= DEGENERATE * eigenvalues[-1]
    if dead.any():
        live = filters[~dead].flip(0)  # strongest first
        filters[dead] = live[torch.arange(int(dead.sum())) % len(live)]
    filters = filters.reshape(c * 4, c, 2, 2)
    conv.weight.copy_(torch.cat([filters, -filters]).to(conv.weight.dtype))

# The architecture's defaults for the fit loop's options (dnic_utils.config.RunConfig); any of them can still be set per run.
# The optimiser's are airbench94's, restated for a mean (not summed) loss: its lr 11.5 per 1,024 images with Nesterov
# momentum 0.85 is 1.5 per 1,024 here, i.e. 0.09375 per 64; its weights and BN biases both shrink by 0.002 per step at the
# peak, i.e. weight decay 0.002 / 1.5; its BN biases learn 64× faster.
RECIPE = {
    "lr_per_64": 1.5 / 16,
    "momentum": 0.85,
    "weight_decay": 0.002 / 1.5,
    "schedule": "triangle",
    "bias_lr": 64.0,
    "bias_decay": True,
    "label_smoothing": 0.2,
    "lookahead": True,
    "rotation": 0.0,
    "translate": 2,
    "alternate_flips": True,
    "tta": "multiview",
}
