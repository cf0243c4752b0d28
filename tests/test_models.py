"""The model registry: every architecture builds and runs on both input kinds; sizes, FLOPs and bad input."""

from __future__ import annotations

import math

import pytest
import torch

from dnic_utils.errors import DnicError
from dnic_utils.models import REGISTRY, anatomy, build_model, count_flops, model_size, model_spec

INPUTS = [(1, 28), (3, 32)]


@pytest.mark.parametrize("in_channels, image_size", INPUTS, ids=["grey28", "rgb32"])
@pytest.mark.parametrize("arch", list(REGISTRY))
def test_every_architecture_builds_and_classifies(arch: str, in_channels: int, image_size: int) -> None:
    torch.manual_seed(0)
    model = build_model(arch, 10, in_channels, image_size)
    model.eval()
    with torch.no_grad():
        logits = model(torch.randn(2, in_channels, image_size, image_size))
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()

    size = model_size(model)
    assert size["params"] == sum(p.numel() for p in model.parameters())
    assert size["trainable_params"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert size["trainable_params"] == size["params"] or arch == "fastnet"  # FastNet's whitening filters and BN scales are frozen
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    assert size["size_mb"] * 1e6 >= weights  # buffers (batch-norm statistics) come on top

    flops = count_flops(model, in_channels, image_size)
    assert flops > 0
    dense = sum(m.weight.numel() for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert flops >= 2 * dense  # every conv/linear weight takes part in at least one multiply-add per image
    assert not model.training  # count_flops restores the mode it found


@pytest.mark.parametrize("arch", list(REGISTRY))
def test_every_architecture_starts_training_near_chance(arch: str) -> None:
    # Large initial logits stall training from scratch (torchvision's Inception3 init started near 5 and reached 12% where He init reached 58%)
    torch.manual_seed(0)
    model = build_model(arch, 10, 3, 32).train()
    loss = torch.nn.functional.cross_entropy(model(torch.randn(8, 3, 32, 32)), torch.randint(0, 10, (8,)))
    assert abs(loss.item() - math.log(10)) < 0.6


def test_count_flops_keeps_training_mode_and_scales_with_input() -> None:
    model = build_model("resnet18", 10, 3, 32)
    model.train()
    small = count_flops(model, 3, 32)
    assert model.training
    assert count_flops(model, 3, 64) > 3 * small  # 4× the pixels, stride-1 stem either way


def test_lenet5_has_the_classic_size() -> None:
    """LeNet-5 has 61,706 parameters for 10 classes, on 32×32 inputs and on 28×28 inputs padded to match."""
    for size in (28, 32):
        assert model_size(build_model("lenet5", 10, 1, size))["params"] == 61_706
    # one multiply-add = 2 FLOPs; the classic count is about 0.42 M multiply-adds
    assert 0.8e6 < count_flops(build_model("lenet5", 10, 1, 28), 1, 28) < 0.9e6


def test_small_image_models_keep_parameter_counts_small() -> None:
    vgg = model_size(build_model("vgg16", 10, 3, 32))["params"]
    resnet = model_size(build_model("resnet18", 10, 3, 32))["params"]
    assert 14.5e6 < vgg < 15.5e6  # 3×3 stacks + one linear layer, no 4096-wide head
    assert 11.0e6 < resnet < 11.3e6
    assert model_size(build_model("resnet18", 10, 1, 28))["params"] == resnet - 2 * 64 * 9  # 1-channel stem


@pytest.mark.parametrize("arch", ["vgg16", "vgg19"])
@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32)])
def test_every_vgg_parameter_learns_on_small_images(arch: str, channels: int, size: int) -> None:
    torch.manual_seed(0)
    model = build_model(arch, 10, channels, size)
    model(torch.randn(4, channels, size, size)).sum().backward()
    dead = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum(dim=tuple(range(1, p.ndim))).all()]
    assert dead == []  # no filter, and no whole slice of one, is cut off from the data (1×1 maps would leave 8 of 9 taps idle)
    for name, p in model.named_parameters():
        if p.ndim == 4 and p.shape[-1] == 3:
            assert (p.grad.abs().sum(dim=(0, 1)) > 0).all(), f"{name}: a 3×3 tap never sees data"


# The published ImageNet sizes (1000 classes, 3×224×224; 3×299×299 for Inception v3), with batch-norm VGGs and no aux heads.
IMAGENET_PARAMS = [
    ("vgg16", 224, 138_365_992), ("vgg19", 224, 143_678_248), ("resnet18", 224, 11_689_512), ("resnet50", 224, 25_557_032),
    ("resnet101", 224, 44_549_160), ("mobilenet_v2", 224, 3_504_872), ("googlenet", 224, 6_624_904), ("inception_v3", 299, 23_834_568),
]


@pytest.mark.parametrize("arch, size, params", IMAGENET_PARAMS, ids=[a for a, _, _ in IMAGENET_PARAMS])
def test_imagenet_configuration_has_the_published_size(arch: str, size: int, params: int) -> None:
    model = build_model(arch, 1000, 3, size)
    assert model_size(model)["params"] == params
    if arch != "inception_v3":  # Inception3 is checked at its native 299 px below; the others must run at 224
        with torch.no_grad():
            assert model.eval()(torch.zeros(1, 3, size, size)).shape == (1, 1000)


def test_inception_v3_upsamples_small_inputs_to_what_it_needs() -> None:
    from dnic_utils.models.inception import MIN_SIDE

    model = build_model("inception_v3", 10, 1, 28).eval()
    seen = []
    model.net.Conv2d_1a_3x3.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[-1]))
    with torch.no_grad():
        model(torch.zeros(1, 1, 28, 28))
    assert seen == [MIN_SIDE]
    # the upsampling is inside the model, so its FLOPs are those of the 75 px network
    assert count_flops(model, 1, 28) > count_flops(build_model("inception_v3", 10, 1, 28).net, 1, 75) * 0.99


@pytest.mark.parametrize("arch, in_channels, size, side", [
    ("resnet50", 3, 32, 4), ("googlenet", 3, 32, 4), ("mobilenet_v2", 3, 32, 4), ("mobilenet_v2", 1, 28, 4),
    ("resnet18", 3, 224, 7), ("mobilenet_v2", 3, 224, 7), ("minigooglenet", 3, 32, 7), ("resnet9", 1, 28, 3),
])
def test_small_image_adaptations_keep_a_usable_final_grid(arch: str, in_channels: int, size: int, side: int) -> None:
    """The CIFAR/MNIST stems leave the last conv a small grid instead of 1×1 (or nothing), and ImageNet sizes are untouched."""
    layers = anatomy.layer_table(build_model(arch, 10, in_channels, size), in_channels, size)
    assert anatomy.stats(layers)["last_conv_side"] == side


def test_anatomy_counts_the_flops_of_every_layer() -> None:
    for arch in ("resnet18", "mobilenet_v2", "weightedsumnet_improved"):
        model = build_model(arch, 10, 3, 32)
        layers = anatomy.layer_table(model, 3, 32)
        total = count_flops(model, 3, 32)
        assert 0.97 * total < layers["flops"].sum() <= total  # convs and linears are nearly all the FLOPs
        assert layers["params"].sum() <= model_size(model)["params"]
        table = anatomy.breakdown(layers)
        assert table["FLOPs share (%)"].sum() == pytest.approx(100)
        assert table["flops"].is_monotonic_decreasing
    mobile = anatomy.stats(anatomy.layer_table(build_model("mobilenet_v2", 10, 3, 32), 3, 32))
    assert mobile["depthwise_layers"] == 17 and mobile["depthwise_share"] < 0.1
    assert 5 < mobile["separable_saving"] < 9  # about k² = 9 for wide layers, less where the 1×1 outputs are narrow
    assert anatomy.stats(anatomy.layer_table(build_model("resnet18", 10, 3, 32), 3, 32))["depthwise_layers"] == 0


def test_weighted_sum_block_mixes_its_branches_with_input_dependent_weights() -> None:
    from dnic_utils.models.weightedsum import WeightedSumBlock

    torch.manual_seed(0)
    block = WeightedSumBlock(4, 5, branches=3).eval()
    x = torch.randn(6, 4, 8, 8)
    out = block(x)
    w = block.last_weights
    assert w.shape == (6, 3) and torch.allclose(w.sum(1), torch.ones(6))
    assert (w.std(0) > 0).all()  # different images get different weights
    branches = torch.relu(block.convs(x)).view(6, 3, 5, 8, 8)  # the K independent convolutions, one by one
    expected = sum(w[:, k, None, None, None] * branches[:, k] for k in range(3))
    assert torch.allclose(out, expected, atol=1e-6)
    with torch.no_grad():  # a gate that prefers branch 2 puts (almost) all the weight there
        block.gate.weight.zero_()
        block.gate.bias.copy_(torch.tensor([0.0, 20.0, 0.0]))
    assert torch.allclose(block(x), branches[:, 1], atol=1e-5)


def test_weighted_sum_net_without_batch_norm_keeps_the_signal_scale() -> None:
    # He init: the blocks' output keeps a usable scale (PyTorch's default init left 0.03 of the input's RMS)
    torch.manual_seed(0)
    model = build_model("weightedsumnet", 10, 3, 32)
    rms = model.blocks(torch.randn(32, 3, 32, 32)).pow(2).mean().sqrt().item()
    assert 0.15 < rms < 3


def test_weighted_sum_nets_report_their_branch_weights() -> None:
    for arch, blocks in (("weightedsumnet", 3), ("weightedsumnet_improved", 4)):
        model = build_model(arch, 10, 3, 32).eval()
        assert model.branch_weights() == []
        with torch.no_grad():
            model(torch.randn(2, 3, 32, 32))
        assert [tuple(w.shape) for w in model.branch_weights()] == [(2, 3)] * blocks
    improved = build_model("weightedsumnet_improved", 10, 3, 32)
    assert [m.out_channels for m in improved.modules() if isinstance(m, torch.nn.Conv2d)] == [3 * 64, 3 * 128, 3 * 256, 3 * 256]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in improved.modules()) == 3
    assert {m.p for m in improved.modules() if isinstance(m, torch.nn.Dropout)} == {0.1}


def test_exporting_a_weighted_sum_net_leaves_its_inspection_attribute_alone() -> None:
    import warnings

    model = build_model("weightedsumnet", 10, 1, 28).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch.export warns about a tensor attribute assigned while it traces
        torch.export.export(model, (torch.randn(2, 1, 28, 28),), strict=False)
    assert model.branch_weights() == []


def test_every_registry_text_formats_from_the_model() -> None:
    from dnic_utils.report import architecture

    for arch in REGISTRY:
        for in_channels, size in INPUTS:
            text, table = architecture(arch, in_channels, size)
            assert "{" not in text and model_spec(arch).summary in text, arch
            assert not table.empty and table["FLOPs share (%)"].sum() == pytest.approx(100, abs=0.5)


def test_unknown_architecture_lists_the_valid_names() -> None:
    with pytest.raises(DnicError) as err:
        build_model("alexnet", 10, 3, 32)
    message = str(err.value)
    assert "'alexnet'" in message and "Fix:" in message
    for name in REGISTRY:
        assert name in message
    with pytest.raises(DnicError):
        model_spec("LeNet5")  # names are exact


@pytest.mark.parametrize("arch", ["resnet9", "weightedsumnet", "googlenet"])
def test_every_minimum_size_is_enforced_with_a_fix(arch: str) -> None:
    spec = model_spec(arch)
    with torch.no_grad():  # the minimum itself works
        assert build_model(arch, 10, 3, spec.min_size).eval()(torch.zeros(1, 3, spec.min_size, spec.min_size)).shape == (1, 10)
    with pytest.raises(DnicError) as err:
        build_model(arch, 10, 3, spec.min_size - 1)
    assert f"image_size ≥ {spec.min_size}" in str(err.value)


def test_too_small_input_says_what_to_change() -> None:
    with pytest.raises(DnicError) as err:
        build_model("lenet5", 10, 1, 8)
    message = str(err.value)
    assert "LeNet-5" in message and "8×8" in message
    assert "Fix:" in message and "image_size ≥ 16" in message


@pytest.mark.parametrize("kwargs, label", [
    ({"num_classes": 0}, "num_classes"),
    ({"num_classes": -3}, "num_classes"),
    ({"in_channels": 0}, "in_channels"),
    ({"image_size": 32.0}, "image_size"),
])
def test_non_positive_sizes_are_rejected(kwargs: dict, label: str) -> None:
    args = {"num_classes": 10, "in_channels": 3, "image_size": 32, **kwargs}
    with pytest.raises(DnicError) as err:
        build_model("resnet18", **args)
    assert f"`{label}`" in str(err.value) and "Fix:" in str(err.value)


def test_registry_entries_are_described() -> None:
    for name, spec in REGISTRY.items():
        assert spec.title and spec.family and len(spec.summary) > 50, name
        assert spec.min_size >= 1
    assert REGISTRY["lenet5"].tier == "light" and REGISTRY["vgg16"].tier == "standard" and REGISTRY["resnet101"].tier == "heavy"


def test_the_readme_architecture_table_has_one_measured_row_per_registry_entry() -> None:
    from dnic_utils.readme import architecture_table

    rows = architecture_table().strip().splitlines()[2:]
    assert [r.split("|")[1].strip(" `") for r in rows] == list(REGISTRY)
    resnet = next(r for r in rows if r.startswith("| `resnet18`"))
    assert f"{model_size(build_model('resnet18', 10, 3, 32))['params']:,}" in resnet


def test_bottleneck_resnets_start_their_residual_branches_at_zero() -> None:
    from torchvision.models.resnet import BasicBlock, Bottleneck

    deep = build_model("resnet50", 10, 3, 32)
    assert all(torch.count_nonzero(b.bn3.weight) == 0 for b in deep.modules() if isinstance(b, Bottleneck))
    shallow = build_model("resnet18", 10, 3, 32)
    assert all(torch.all(b.bn2.weight == 1) for b in shallow.modules() if isinstance(b, BasicBlock))
