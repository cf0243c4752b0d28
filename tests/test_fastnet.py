"""FastNet: the frozen whitening stem set from data, its stages, and its recipe in a run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from dnic_utils import experiment, train
from dnic_utils.config import RunConfig, make_config
from dnic_utils.models import REGISTRY, build_model, model_spec
from dnic_utils.models.fastnet import WHITEN_EPS, whiten


def patches_of(images: torch.Tensor) -> torch.Tensor:
    """Every 2×2 patch of the images as a row (channel, row, column order, as the conv's filters)."""
    c = images.shape[1]
    return images.unfold(2, 2, 1).unfold(3, 2, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, c * 4)


def test_the_whitening_stem_decorrelates_the_patches_of_its_images() -> None:
    torch.manual_seed(0)
    mixing = torch.randn(3, 3)
    images = torch.einsum("ij,njhw->nihw", mixing, torch.randn(64, 3, 16, 16)).cumsum(-1) / 4  # correlated channels and pixels
    model = build_model("fastnet", 10, 3, 32)
    whiten(model, images)
    conv = model[0][0]
    responses = torch.nn.functional.conv2d(images, conv.weight[:12])  # the first half; the second is its negation
    assert torch.equal(conv.weight[12:], -conv.weight[:12])
    cov = torch.cov(responses.permute(1, 0, 2, 3).reshape(12, -1))
    eigenvalues = torch.linalg.eigvalsh(torch.cov(patches_of(images).T.double()))
    expected = torch.diag((eigenvalues / (eigenvalues + WHITEN_EPS)).float())  # unit variance up to the eps
    assert torch.allclose(cov, expected, atol=2e-2)


def test_grey_images_shown_as_rgb_leave_no_stem_channel_constant() -> None:
    torch.manual_seed(0)
    grey = torch.randn(64, 1, 16, 16).cumsum(-1) / 4
    images = grey.expand(-1, 3, -1, -1)  # identical channels: 8 of the 12 patch directions have no variance
    model = build_model("fastnet", 10, 3, 32)
    whiten(model, images)
    weight = model[0][0].weight
    assert torch.isfinite(weight).all() and weight.abs().max() < 100  # not the 1/sqrt(eps) of a direction with no variance
    responses = torch.nn.functional.conv2d(images, weight)
    assert responses.var(dim=(0, 2, 3)).min() > 0.1  # a constant channel would meet batch norm's eps of 1e-12


def test_the_stem_is_frozen_and_the_stages_cover_the_net() -> None:
    model = build_model("fastnet", 10, 1, 28)
    assert not any(p.requires_grad for p in model[0].parameters())  # the whole stem: filters from the data, bias zero
    assert not model[0][0].bias.any()
    assert len(model.stages) == 5 and sum(p.numel() for s in model.stages for p in s.parameters()) == sum(p.numel() for p in model.parameters())
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    cfg = make_config("fastnet", "mnist", profile="smoke")
    trainable = {id(p) for group in train.make_optimizer(model, cfg).param_groups for p in group["params"]}
    assert not trainable & {id(p) for p in model[0].parameters()} and trainable == {id(p) for p in model.parameters() if p.requires_grad}


def test_each_group_starts_as_the_identity_on_its_inputs_channels_and_keeps_airbenchs_norm_statistics() -> None:
    model = build_model("fastnet", 10, 3, 32)
    for group, width in zip(model.stages[1:4], (24, 64, 256)):
        first_conv, norm = group[0], group[2]
        x = torch.randn(2, width, 8, 8)
        assert torch.allclose(first_conv(x)[:, :width], x, atol=1e-6)  # Dirac init on the first in_channels filters
        assert width == 256 or first_conv(x)[:, width:].abs().sum() > 0  # the others (where there are more) start at random
        assert norm.momentum == 0.4 and norm.eps == 1e-12 and not norm.weight.requires_grad


def test_the_recipe_restates_airbenchs_optimiser_for_a_mean_loss() -> None:
    cfg = RunConfig("fastnet", "cifar10", "full", batch_size=1024)  # not make_config: the tests' DNIC_PROFILE would win
    assert cfg.lr == 1.5 and cfg.momentum == 0.85 and cfg.schedule == "triangle" and cfg.bias_lr == 64.0
    assert cfg.lr * cfg.weight_decay == pytest.approx(0.002)  # airbench's weights shrink by 0.002 per step at the peak
    assert RunConfig("fastnet", "cifar10", "full", batch_size=512).lr == 0.75  # linear scaling
    assert RunConfig("resnet18", "cifar10", "full", batch_size=512).lr == 0.4  # other nets keep 0.05 per 64


def test_a_fastnet_run_whitens_from_training_images_and_uses_its_recipe(project_dir: Path, fixture_data: Path,
                                                                         monkeypatch) -> None:
    seen: list[torch.Tensor] = []
    spec = dataclasses.replace(model_spec("fastnet"), init_from_data=lambda model, images: (seen.append(images), whiten(model, images)))
    monkeypatch.setitem(REGISTRY, "fastnet", spec)
    run = experiment.run(make_config("fastnet", "cifar10", profile="smoke", device="cpu"), data_dir=str(fixture_data))
    assert len(seen) == 1 and seen[0].shape[1:] == (3, 32, 32)
    assert abs(seen[0].mean().item()) < 0.5  # normalised as the model sees its inputs
    assert run.record["config"]["tta"] == "multiview" and run.record["config"]["label_smoothing"] == 0.2
    assert "multiview TTA" in run.title
