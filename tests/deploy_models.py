"""Shared by the deployment tests: tiny exported models (made once per session) and image files, good and crafted bad ones."""

from __future__ import annotations

import io
import json
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dnic_utils.export import export_untrained

_MADE: dict[tuple[str, str], Path] = {}


def untrained_card(factory: pytest.TempPathFactory, dataset: str, arch: str = "lenet5") -> Path:
    """The card of an untrained model for a dataset's input, exported once per test session (an export takes seconds)."""
    if (arch, dataset) not in _MADE:
        _MADE[arch, dataset] = export_untrained(arch, dataset, factory.mktemp(f"model-{dataset}-{arch}"))
    return _MADE[arch, dataset]


def install(card_path: Path, results: Path, profile: str, name: str, test_acc: float | None = 0.5, val_acc: float | None = None) -> Path:
    """A copy of an exported model under results/<profile>/models/ with another name, profile, test accuracy and a parity entry
    (and its run's validation accuracy where given)."""
    card = json.loads(card_path.read_text())
    folder = results / profile / "models"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(card_path.parent / card["onnx_file"], folder / f"{name}.onnx")
    parity = {"images": 100, "same_argmax": 100, "max_abs_diff": 1e-7, "tolerance": 1e-3, "onnx_test_acc": test_acc}
    card.update(name=name, profile=profile, onnx_file=f"{name}.onnx", test_acc=test_acc, parity=parity)
    if val_acc is not None:
        card["source"] = {**(card.get("source") or {}), "val_acc": val_acc}
    path = folder / f"{name}.json"
    path.write_text(json.dumps(card))
    return path


def image_bytes(shape: tuple[int, ...], fmt: str = "PNG", seed: int = 0) -> bytes:
    """A random image, (H, W) grey or (H, W, 3) RGB, encoded as PNG or JPEG."""
    pixels = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims width × height RGB pixels but holds a few bytes of data: a decompression bomb's header, no big allocation."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        """One PNG chunk with its length and CRC."""
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def truncated_png() -> bytes:
    """A real PNG cut in half: its header reads, its pixels do not."""
    data = image_bytes((64, 64, 3))
    return data[: len(data) // 2]


TEXT = b"name,value\nnot,an image\n"  # a text file, saved under a .png name by the tests
