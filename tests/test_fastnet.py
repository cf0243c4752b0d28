"""FastNet: the frozen whitening stem set from data, its stages, and its recipe in a run."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from dnic_utils import experiment, train
from dnic_utils.config import make_config
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


def test_the_stem_is_frozen_and_the_stages_cover_the_net() -> None:
    model = build_model("fastnet", 10, 1, 28)
    assert not model[0][0].weight.requires_grad and model[0][0].bias.requires_grad
    assert len(model.stages) == 5 and sum(p.numel() for s in model.stages for p in s.parameters()) == sum(p.numel() for p in model.parameters())
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    cfg = make_config("fastnet", "mnist", profile="smoke")
    trainable = {id(p) for group in train.make_optimizer(model, cfg).param_groups for p in group["params"]}
    assert id(model[0][0].weight) not in trainable and id(model[0][0].bias) in trainable


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
