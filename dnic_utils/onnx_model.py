"""Exported models: an ONNX file with its JSON model card, found by name under results/<profile>/models/ and run with onnxruntime.

The graph takes uint8 images (batch, C, H, W) at the model's size and colour and normalises them itself; it returns
logits. The card says so, and holds the classes, the normalisation, the source run and the parity check of the export.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import PROFILES
from .errors import DnicError
from .images import decode
from .settings import result_roots

CARD_FORMAT = "dnic-onnx/1"
CARD_KEYS = ("format", "name", "title", "arch", "dataset", "profile", "classes", "input", "output", "normalisation", "onnx_file", "sha256", "size_mb",
             "source", "test_acc", "parity", "exported")
DEFAULT_DATASET = "cifar10"  # the model predict and serve use when none is named


def read_card(path: str | os.PathLike) -> dict:
    """A model card with its ONNX file beside it, checked; its 'path' is added. A clear error when it is not one."""
    path = Path(path)
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DnicError(f"Cannot read the model card {path} ({type(err).__name__}).", "export the model again: python -m dnic_utils.export RUN.") from None
    missing = [k for k in CARD_KEYS if k not in card] if isinstance(card, dict) else list(CARD_KEYS)
    if missing or card["format"] != CARD_FORMAT:
        why = f"lacks {', '.join(missing)}" if missing else f"has format {card['format']!r}, not {CARD_FORMAT!r}"
        raise DnicError(f"{path} is not a model card of this version: it {why}.", "export the model again: python -m dnic_utils.export RUN.")
    if not (path.parent / card["onnx_file"]).is_file():
        raise DnicError(f"The model file {card['onnx_file']} named by {path} is missing.", "export the model again, or restore the file.")
    return {**card, "path": str(path), "superseded": superseded(card, path)}


def superseded(card: dict, path: Path) -> str | None:
    """Why an export no longer stands for its run (its record was rewritten by a later training, or is gone); None while it does."""
    source = card.get("source")
    if not source or "run" not in source:  # untrained, or a card without its run's name: nothing to compare with
        return None
    if path.parent.name != "models" or path.parent.parent.name not in PROFILES:  # exported elsewhere (--out): no record beside it to ask
        return None
    record_path = path.parent.parent / f"{source['run']}.json"
    try:
        record = json.loads(record_path.read_text())
        created, run_id = record.get("created"), record.get("checkpoint_id")
    except (OSError, ValueError, AttributeError):
        return f"its run record {source.get('record', record_path.name)} is missing or unreadable"
    if created != source.get("created") or ("checkpoint_id" in source and run_id != source["checkpoint_id"]):
        return f"its run {source['run']} was trained again ({str(created)[:10]}) after this export was made from the run of {str(source.get('created'))[:10]}"
    return None


def stale_warning(card: dict) -> str | None:
    """The warning a command prints for an export that no longer stands for its run; None while it does."""
    if not card.get("superseded"):
        return None
    return f"warning: this export is out of date: {card['superseded']}; export it again (python -m dnic_utils.export RUN)"


def find_cards(roots: list[Path] | None = None) -> list[dict]:
    """Every model card under <root>/<profile>/models/, root by root, the highest profile first; a card that cannot be read is named in a warning."""
    cards, seen = [], set()
    for root in result_roots() if roots is None else roots:
        paths = [p for p in root.glob("*/models/*.json") if p.parent.parent.name in PROFILES]
        for path in sorted(paths, key=lambda p: (-PROFILES[p.parent.parent.name].rank, p.name)):
            try:
                card = read_card(path)
            except DnicError as err:
                warnings.warn(f"model card left out: {err.problem}", stacklevel=2)
                continue
            if (card["profile"], card["name"]) not in seen:  # the project's copy wins over the checkout's
                seen.add((card["profile"], card["name"]))
                cards.append(card)
    return cards


def resolve(name: str | None = None) -> Path:
    """The card of a model: a path to its .onnx or .json file, a name such as 'mnist-lenet5' (the highest profile's), or None: the default."""
    if name and Path(name).suffix in (".onnx", ".json"):
        path = Path(name).with_suffix(".json")
        if not path.is_file():
            raise DnicError(f"No model card at {path}.", "pass the .onnx file of an export (its .json card lies beside it), or a model name.")
        return path
    cards = find_cards()
    if not cards:
        raise DnicError("No exported model found under results/<profile>/models/.",
                        "export one first: python -m dnic_utils.export RUN (e.g. cifar10-lenet5), or pass --model PATH.onnx.")
    if name is None:  # a current CIFAR-10 export if there is one (the best validation accuracy of the highest profile that has one), else the first
        current = [c for c in cards if not c["superseded"]] or cards
        cifar = [c for c in current if c["dataset"] == DEFAULT_DATASET]
        top = [c for c in cifar if c["profile"] == cifar[0]["profile"]] if cifar else current[:1]
        return Path(max(top, key=card_val_acc)["path"])
    found = [c for c in cards if c["name"] == name]
    if not found:
        raise DnicError(f"No exported model named {name!r}.", f"use one of: {', '.join(sorted({c['name'] for c in cards}))}; or pass --model PATH.onnx.")
    return Path(found[0]["path"])


def card_val_acc(card: dict) -> float:
    """The validation accuracy of an export's run, from its card (-1 where the card has none: exported without a record): what a choice goes by."""
    val = (card.get("source") or {}).get("val_acc")
    return -1.0 if val is None else val


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, computed stably in float64."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def top_classes(probabilities: np.ndarray, classes: list[str], k: int) -> list[dict]:
    """The k most probable classes of one image, most probable first, as {'class', 'probability'}."""
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [{"class": classes[i], "probability": float(probabilities[i])} for i in order]


def card_summary(card: dict) -> dict[str, Any]:
    """What a listing shows of a model: name, title, profile, dataset, classes, input, test accuracy and the source run."""
    return {k: card.get(k) for k in ("name", "title", "profile", "dataset", "classes", "input", "test_acc", "size_mb", "source", "superseded")}


@dataclass
class OnnxModel:
    """An exported model ready to predict: its card and an onnxruntime session."""

    card: dict
    session: Any  # onnxruntime.InferenceSession

    @property
    def name(self) -> str:
        """The model's name, e.g. 'cifar10-lenet5'."""
        return self.card["name"]

    @property
    def classes(self) -> list[str]:
        """Class names in output order."""
        return self.card["classes"]

    @property
    def channels(self) -> int:
        """1 (grey) or 3 (RGB)."""
        return self.card["input"]["shape"][1]

    @property
    def size(self) -> int:
        """The side of the square input image in pixels."""
        return self.card["input"]["shape"][2]

    def decode(self, data: bytes, name: str = "the image") -> np.ndarray:
        """PNG or JPEG bytes as this model's uint8 input image (C, H, W): converted to its colour and resized."""
        return decode(data, self.channels, self.size, name)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Logits (N, classes) of uint8 images (N, C, H, W) of the model's size."""
        return self.session.run(None, {self.card["input"]["name"]: np.ascontiguousarray(images, dtype=np.uint8)})[0]

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Class probabilities (N, classes) of uint8 images (N, C, H, W)."""
        return softmax(self.logits(images))


def session_from_bytes(onnx: bytes, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for an ONNX model in memory (threads: intra-op threads, None for onnxruntime's default)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(onnx, options, providers=["CPUExecutionProvider"])


def load_model(name: str | None = None, threads: int | None = None) -> OnnxModel:
    """An exported model by name or path (see resolve), its file checked against the card's checksum."""
    card = read_card(resolve(name))
    onnx = (Path(card["path"]).parent / card["onnx_file"]).read_bytes()
    if hashlib.sha256(onnx).hexdigest() != card["sha256"]:
        raise DnicError(f"{card['onnx_file']} does not match the checksum in its card {card['path']}.",
                        "export the model again (the file was changed or replaced after the export).")
    return OnnxModel(card, session_from_bytes(onnx, threads))
