"""Atomic file writes: a reader, or a crash, sees either the old file or the new one, never half of one."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

FILE_MODE = 0o644
LEFTOVER_AGE_S = 3600  # a temporary file this old is a killed write's; a younger one may be another process's write in progress


def _leftovers(path: Path) -> list[Path]:
    """Temporary files that an interrupted write of `path` left beside it (older than LEFTOVER_AGE_S: not another writer's)."""
    found = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if time.time() - tmp.stat().st_mtime > LEFTOVER_AGE_S:
                found.append(tmp)
        except FileNotFoundError:  # its writer renamed it meanwhile
            continue
    return found


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a file atomically (temporary file, fsync, rename), first removing what a killed earlier write left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in _leftovers(path):  # a kill -9 between mkstemp and rename leaves one behind
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)  # mkstemp creates 0600; keep files readable like any other
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """torch.save, written atomically."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def file_sha256(*paths: Path) -> str:
    """The SHA-256 of a file's bytes (of several files', in the given order), read in chunks."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
