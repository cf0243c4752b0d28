"""Run records: one JSON per run under results/<profile>/, written atomically, with the run's provenance."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import platform
import subprocess
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import PROFILES
from .devices import device_info
from .errors import DnicError
from .files import atomic_write_bytes
from .settings import checkout, project_root

TRAIN_METRICS = ("test_loss", "test_acc", "macro_precision", "macro_recall", "macro_f1", "confusion", "train_loss", "train_acc",
                 "train_time_s", "images_per_s", "params", "trainable_params", "size_mb", "flops")
REQUIRED_KEYS = ("kind", "name", "profile", "config", "metrics", "device", "versions", "git_commit", "data", "seed", "wall_time_s", "created")


CODE_PATHS = ("dnic_utils", "notebooks/templates", "benchmarks", "pyproject.toml", "requirements.txt",
              ":(exclude)benchmarks/RESULTS.md")  # the benchmarks' generated results are output, not code


def git_commit(root: Path | None = None) -> str | None:
    """The HEAD commit of the code that runs (or of the checkout at root), with '-dirty' when its code, not its outputs, has changed.

    Outside a git checkout (a copy of the tree on a remote GPU machine) it is DNIC_GIT_COMMIT, else None.
    """
    root = root or (checkout() if (checkout() / ".git").exists() else project_root())
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
                               cwd=root, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("DNIC_GIT_COMMIT") or None
    return f"{sha}-dirty" if dirty else sha


def versions() -> dict:
    """Versions of Python, torch and torchvision."""
    import torchvision

    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__}


def results_dir(profile: str) -> Path:
    """Where the records of one profile live; each profile has its own folder, so none overwrites another."""
    return project_root() / "results" / profile


def utc_now() -> str:
    """The time now as records write it, e.g. '2026-12-01T13:43:59+00:00'."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


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
        "created": utc_now(),
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
    wrong = [k for k in ("config", "metrics") if not isinstance(record[k], dict)]
    if wrong:
        raise ValueError(f"run record's {' and '.join(wrong)} is not a JSON object")
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


def read_record(profile: str, name: str) -> dict | None:
    """The record results/<profile>/<name>.json, or None when there is none or it cannot be read."""
    path = results_dir(profile) / f"{name}.json"
    try:
        record = json.loads(path.read_text())
        validate_record(record)
    except (OSError, ValueError):
        return None
    return record


PREDICTION_DTYPES = {"y_true": np.uint8, "y_pred": np.uint8, "confidence": np.float16}


def same_run(record: dict, meta: dict) -> bool:
    """Whether a trained model's metadata (its best.pt) comes from the run a record describes: same config, selected epoch and accuracy."""
    m = record.get("metrics", {})
    return (record.get("config"), m.get("best_epoch"), m.get("best_val_acc")) == (meta.get("config"), meta.get("epoch"), meta.get("val_acc"))


def encode_predictions(y_true: torch.Tensor, y_pred: torch.Tensor, confidence: torch.Tensor) -> dict:
    """Per test image the label, the prediction and its softmax probability, base64 of little-endian arrays: 4 bytes per image."""
    arrays = {"y_true": y_true, "y_pred": y_pred, "confidence": confidence}
    return {"encoding": "base64 little-endian: uint8 labels, float16 confidence", "count": len(y_true),
            **{k: base64.b64encode(np.asarray(v.cpu().numpy(), dtype=np.dtype(PREDICTION_DTYPES[k]).newbyteorder("<")).tobytes()).decode()
               for k, v in arrays.items()}}


def test_predictions(record: dict) -> dict[str, np.ndarray]:
    """The per-image test labels, predictions and confidences of a training record, decoded."""
    blob = record["predictions"]
    try:
        out = {k: np.frombuffer(base64.b64decode(blob[k]), dtype=np.dtype(dt_).newbyteorder("<")) for k, dt_ in PREDICTION_DTYPES.items()}
        whole = all(len(v) == blob["count"] for v in out.values())
    except (KeyError, TypeError, ValueError):  # a missing array, or not base64 of whole items
        whole = False
    if not whole:
        raise DnicError(f"Run record {record.get('name')!r} ({record.get('profile')}) has damaged per-image test predictions.",
                        "run its notebook again to rewrite the record (python -m dnic_utils.runner --only '<notebook>').")
    return out


def record_problem(err: Exception) -> str:
    """Why a record file could not be read, without the machine path that an OSError's message carries."""
    if isinstance(err, OSError):
        return err.strerror or type(err).__name__
    return " ".join(str(err).split())  # one line, as the README prints it


def scan_records(root: Path | None = None) -> tuple[list[dict], list[str]]:
    """Every valid record under results/, any profile, and one 'results/<profile>/<file> (unreadable: why)' per other JSON file."""
    folder = root or project_root() / "results"
    out, problems = [], []
    for path in sorted(folder.glob("*/*.json")):
        try:
            record = json.loads(path.read_text())
            validate_record(record)
        except (ValueError, OSError) as err:
            problems.append(f"{path.relative_to(folder.parent).as_posix()} (unreadable: {record_problem(err)})")
            continue
        out.append(record)
    return out, problems


def load_records(root: Path | None = None) -> list[dict]:
    """Every valid record under results/, any profile; warns naming each file that cannot be read."""
    out, problems = scan_records(root)
    for problem in problems:
        warnings.warn(f"run record left out: {problem}", stacklevel=2)
    return out
