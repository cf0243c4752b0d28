"""LeNet-5 (LeCun et al., 1998), with ReLU and max-pooling in place of the original squashing and subsampling."""

import torch
from torch import nn

SUMMARY = (
    "**LeNet-5** is the classic baseline: two 5×5 convolutions with pooling learn local strokes and their "
    "combinations, then three fully connected layers classify. It has no batch norm, no residuals and few "
    "parameters, so it shows what depth and modern blocks buy on top of it."
)
LOOK_FOR = (
    "Here its {layers} layers do {mflops:.2f} MFLOPs per image, {conv_flop_share:.0%} of them in the two convolutions, "
    "yet {linear_param_share:.0%} of its parameters sit in the fully connected layers."
)

# The architecture's defaults for the fit loop's options (dnic_utils.config.RunConfig), chosen on the validation split in the
# budget profile by benchmarks/recipe.py (benchmarks/RESULTS.md, 2 seeds). Against the defaults (rotation ±10°, no test-time
# augmentation) they scored 98.73% against 98.51% on MNIST, 84.65% against 82.45% on Fashion-MNIST and 46.46% against 45.99%
# on CIFAR-10, where keeping the rotation with multiview would have scored 47.18%: one recipe for the three, chosen for the
# two grey datasets. A peak rate of 0.2 diverged on CIFAR-10 (22.07%) and lost on the others. No augmentation at all scored
# 51.93% on CIFAR-10 at one epoch, but augmentation is the profile's, the same for every architecture, so it stays.
RECIPE = {
    "rotation": 0.0,
    "tta": "multiview",
}


class LeNet5(nn.Module):
    """LeNet-5 for any square input of at least 16 pixels."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, image_size: int = 32) -> None:
        super().__init__()
        # MNIST adaptation: the network was designed for 32×32, so a 28×28 input is zero-padded by 2 in the
        # first convolution and the feature maps keep their original 28 → 14 → 10 → 5 sizes.
        pad = max(0, (32 - image_size) // 2)
        side = ((image_size + 2 * pad - 4) // 2 - 4) // 2
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5, padding=pad), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(16 * side * side, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True), nn.Linear(84, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of images."""
        return self.classifier(self.features(x))
