"""GoogLeNet (Inception v1) from torchvision's definition, with a CIFAR-style stem for small images."""

from torch import nn
from torchvision.models.googlenet import BasicConv2d, GoogLeNet

SUMMARY = (
    "**GoogLeNet** (Inception v1) is built from Inception modules: four parallel branches (1×1, 1×1→3×3, "
    "1×1→a wider filter, and 3×3 max-pool→1×1; torchvision's definition uses 3×3 where the paper has 5×5) see the same input at several scales and their outputs are concatenated. "
    "The 1×1 convolutions in front of the large filters cut the channels first; without them the 3×3 branches "
    "would convolve hundreds of input channels and nine such modules would cost several times more. Watch how "
    "the FLOPs split across the branch kinds."
)
LOOK_FOR = (
    "Here 1×1 convolutions (the 1×1 branches, the reductions in front of the 3×3s and the pool projections) do {pointwise_share:.0%} of "
    "the {mflops:,.0f} MFLOPs per image and {top_kind} layers {top_kind_share:.0%}; the last modules work on "
    "{last_conv_side}×{last_conv_side}."
)


def googlenet(num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """torchvision's GoogLeNet without auxiliary heads; below 64 pixels a stride-1 stem keeps the resolution."""
    model = GoogLeNet(num_classes=num_classes, aux_logits=False, transform_input=False, init_weights=True)
    if image_size < 64:
        # CIFAR/MNIST adaptation: the ImageNet stem (7×7 stride 2, two max-pools) shrinks 224 to 28 before the
        # first Inception module; at 32×32 it would leave 4×4. A 3×3 stride-1 first conv and no first max-pool
        # keep the stem at full resolution, and the second max-pool still halves it, so inception 3 works at
        # 16×16, 4 at 8×8 and 5 at 4×4 (28 px: 14, 7, 4) for about ResNet18's FLOPs.
        model.conv1 = BasicConv2d(in_channels, 64, kernel_size=3, stride=1, padding=1)
        model.maxpool1 = nn.Identity()
    elif in_channels != 3:
        model.conv1 = BasicConv2d(in_channels, 64, kernel_size=7, stride=2, padding=3)
    return model
