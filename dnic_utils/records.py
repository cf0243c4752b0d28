"""Run records: one JSON per run under results/<profile>/, written atomically, with the run's provenance."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import torch

from .config import PROFILES, project_root

FILE_MODE = 0o644
TRAIN_METRICS = ("test_loss", "test_acc", "macro_precision", "macro_recall", "macro_f1", "train_loss", "train_acc",
                 "train_time_s", "images_per_s", "params", "trainable_params", "size_mb", "flops")
REQUIRED_KEYS = ("kind", "name", "profile", "config", "metrics", "device", "versions", "git_commit", "data", "seed", "wall_time_s", "created")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers see either the old or the new content, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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


def atomic_torch_save(obj: Any, path: Path) -> None:
    """torch.save, written atomically."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


CODE_PATHS = ("dnic_utils", "notebooks/templates", "benchmarks", "pyproject.toml", "requirements.txt")


def git_commit() -> str | None:
    """The HEAD commit of the code that runs, with '-dirty' when it (not the generated outputs) has changed.

    Outside a git checkout (a copy of the tree on a remote GPU machine) it is DNIC_GIT_COMMIT, else None.
    """
    checkout = Path(__file__).resolve().parent.parent
    root = checkout if (checkout / ".git").exists() else project_root()
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
                               cwd=root, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("DNIC_GIT_COMMIT") or None
    return f"{sha}-dirty" if dirty else sha


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else the architecture."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def device_info(device: str) -> dict:
    """A description of the device a run used."""
    if str(device).startswith("cuda"):
        return {"type": "cuda", "name": torch.cuda.get_device_name(device), "count": torch.cuda.device_count()}
    return {"type": "cpu", "name": cpu_name(), "threads": torch.get_num_threads()}


def versions() -> dict:
    """Versions of Python, torch and torchvision."""
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__}


def results_dir(profile: str) -> Path:
    """Where the records of one profile live; each profile has its own folder, so none overwrites another."""
    return project_root() / "results" / profile


def make_record(kind: str, name: str, profile: str, config: dict, metrics: dict, *, device: str, data: dict, seed: int, wall_time_s: float, **extra: Any) -> dict:
    """A run record with the provenance every record carries."""
    return {
        "kind": kind,
        "name": name,
        "profile": profile,
        "config": config,
        "metrics": metrics,
        "device": device_info(device),
        "versions": versions(),
        "git_commit": git_commit(),
        "data": data,
        "seed": seed,
        "wall_time_s": round(wall_time_s, 3),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def validate_record(record: dict) -> None:
    """Raise ValueError if a record is not an object, lacks a required key or names an unknown profile."""
    if not isinstance(record, dict):
        raise ValueError("run record is not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise ValueError(f"run record lacks {', '.join(missing)}")
    if not isinstance(record["profile"], str) or record["profile"] not in PROFILES:
        raise ValueError(f"run record has unknown profile {record['profile']!r}")
    if record["kind"] == "train":
        missing = [k for k in TRAIN_METRICS if k not in record["metrics"]] + [k for k in ("arch", "dataset") if k not in record["config"]]
        if missing:
            raise ValueError(f"training record lacks {', '.join(missing)}")


def write_record(record: dict) -> Path:
    """Validate and atomically write a record to results/<profile>/<name>.json."""
    validate_record(record)
    path = results_dir(record["profile"]) / f"{record['name']}.json"
    atomic_write_bytes(path, (json.dumps(record, indent=1, sort_keys=True, default=str) + "\n").encode())
    return path


def load_records(root: Path | None = None) -> list[dict]:
    """Every valid record under results/, any profile."""
    out = []
    for path in sorted((root or project_root() / "results").glob("*/*.json")):
        try:
            record = json.loads(path.read_text())
            validate_record(record)
        except (ValueError, OSError):
            continue
        out.append(record)
    return out
