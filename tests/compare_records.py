"""Shared by the comparison's tests: synthetic training records, as experiment.run writes them, with per-image predictions."""

from __future__ import annotations

import json

import numpy as np
import torch

from dnic_utils.config import RunConfig
from dnic_utils.metrics import classification_metrics
from dnic_utils.models import REGISTRY, model_spec
from dnic_utils.records import encode_predictions, make_record

IMAGES = 200
LABELS = np.arange(IMAGES) % 10


def record(arch: str, profile: str = "quick", dataset: str = "cifar10", correct: np.ndarray | None = None, seed: int = 0,
           **config: object) -> dict:
    """A training record as experiment.run writes it, with per-image predictions: right where `correct` says, else the next class."""
    correct = np.ones(IMAGES, dtype=bool) if correct is None else correct
    y_pred = np.where(correct, LABELS, (LABELS + 1) % 10)
    confidence = np.where(correct, 0.9, 0.6)
    cfg = RunConfig(arch, dataset, profile, seed=seed, device="cpu", **config)
    index = list(REGISTRY).index(arch) + 1
    classes = tuple(str(c) for c in range(10))
    metrics = {**classification_metrics(LABELS, y_pred, classes), "test_acc": float(correct.mean()), "test_loss": 1.0, "train_loss": 1.0,
               "train_acc": 0.5, "train_time_s": 10.0 * index, "images_per_s": 1000.0 / index, "params": 1000 * index,
               "trainable_params": 1000 * index, "size_mb": 0.004 * index, "flops": 10**6 * index, "latency_ms": {"1": 0.5 * index, "16": 4.0 * index},
               "amp": "fp32", "best_epoch": 1, "epochs_run": 1, "best_val_acc": 0.5}
    del metrics["accuracy"]
    curve = [{"epoch": k / 8, "images_seen": 32 * k, "train_time_s": 1.0 * k, "val_acc": min(1.0, 0.1 * k)} for k in range(1, 9)]
    rec = make_record("train", cfg.run_name, profile, cfg.to_dict(), metrics, device="cpu",
                      data={"dataset": dataset, "title": "CIFAR-10 (JPEG q75 copy)", "sizes": {"train": 256, "val": 128, "test": IMAGES}},
                      seed=seed, wall_time_s=12.0, arch_title=model_spec(arch).title, curve=curve,
                      predictions=encode_predictions(torch.from_numpy(LABELS), torch.from_numpy(y_pred), torch.from_numpy(confidence)))
    return json.loads(json.dumps(rec, default=str))  # as read back from disk: batch keys of latency_ms become strings


def correct_first(n: int) -> np.ndarray:
    """Right on the first n images, wrong on the rest."""
    mask = np.zeros(IMAGES, dtype=bool)
    mask[:n] = True
    return mask
