"""The model registry: every architecture builds and runs on both input kinds; sizes, FLOPs and bad input."""

from __future__ import annotations

import pytest
import torch

from dnic_utils.errors import DnicError
from dnic_utils.models import REGISTRY, build_model, count_flops, model_size, model_spec

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
    assert size["trainable_params"] == size["params"]
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    assert size["size_mb"] * 1e6 >= weights  # buffers (batch-norm statistics) come on top

    flops = count_flops(model, in_channels, image_size)
    assert flops > 0
    dense = sum(m.weight.numel() for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert flops >= 2 * dense  # every conv/linear weight takes part in at least one multiply-add per image
    assert not model.training  # count_flops restores the mode it found


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


@pytest.mark.parametrize("arch, params", [("vgg16", 138_365_992), ("resnet18", 11_689_512)])
def test_imagenet_configuration_has_the_published_size(arch: str, params: int) -> None:
    model = build_model(arch, 1000, 3, 224)
    assert model_size(model)["params"] == params


def test_unknown_architecture_lists_the_valid_names() -> None:
    with pytest.raises(DnicError) as err:
        build_model("alexnet", 10, 3, 32)
    message = str(err.value)
    assert "'alexnet'" in message and "Fix:" in message
    for name in REGISTRY:
        assert name in message
    with pytest.raises(DnicError):
        model_spec("LeNet5")  # names are exact


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
    assert REGISTRY["lenet5"].light and not REGISTRY["vgg16"].light
