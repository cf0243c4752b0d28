"""Test metrics (scikit-learn), confusion matrices, and speed: throughput and inference latency."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, precision_recall_fscore_support
from torch import nn

from .devices import autocast, synchronize


def classification_metrics(y_true: torch.Tensor | np.ndarray, y_pred: torch.Tensor | np.ndarray, classes: tuple[str, ...]) -> dict:
    """Accuracy, macro precision/recall/F1 and the confusion matrix."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = list(range(len(classes)))
    precision, recall, f1, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_precision": float(precision),
        "macro_recall": float(recall),
        "macro_f1": float(f1),
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def per_class_report(y_true: torch.Tensor | np.ndarray, y_pred: torch.Tensor | np.ndarray, classes: tuple[str, ...]) -> pd.DataFrame:
    """Precision, recall, F1 and support for every class, as a table."""
    report = classification_report(
        np.asarray(y_true), np.asarray(y_pred), labels=list(range(len(classes))), target_names=list(classes), output_dict=True, zero_division=0
    )
    return pd.DataFrame({c: report[c] for c in classes}).T.rename_axis("class")


def top_confusions(confusion: list[list[int]], classes: tuple[str, ...], k: int = 3) -> list[tuple[str, str, int]]:
    """The k most frequent (true, predicted, count) mistakes."""
    cm = np.asarray(confusion).copy()
    np.fill_diagonal(cm, 0)
    flat = np.argsort(cm, axis=None)[::-1][:k]
    return [(classes[i], classes[j], int(cm[i, j])) for i, j in zip(*np.unravel_index(flat, cm.shape)) if cm[i, j] > 0]


@torch.inference_mode()
def inference_latency(model: nn.Module, shape: tuple[int, int, int], batch_size: int, device: str, amp: torch.dtype | None, repeats: int = 5) -> float:
    """Median wall time in milliseconds of one forward pass over a batch of the given size."""
    model.eval()
    x = torch.randn(batch_size, *shape, device=device)

    def forward() -> None:
        """One pass, waited for on an accelerator."""
        with autocast(device, amp):
            model(x)
        synchronize(device)

    synchronize(device)
    return median_ms(forward, repeats, warmup=1)


def median_ms(step: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall time of `step` in milliseconds over `repeats` calls, after `warmup` calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)
