"""Figures with seaborn styling, saved under figures/<profile>/ with stable names."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.layout_engine import ConstrainedLayoutEngine

from .files import atomic_write_bytes
from .settings import project_root


def set_style() -> None:
    """The report's seaborn theme."""
    sns.set_theme(context="notebook", style="whitegrid", palette="deep")


def save(fig: plt.Figure, name: str, profile: str) -> Path:
    """Write a figure atomically to figures/<profile>/<name>.png and return the path."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    path = project_root() / "figures" / profile / f"{name}.png"
    atomic_write_bytes(path, buf.getvalue())
    return path


def saved(fig: plt.Figure, name: str, profile: str) -> plt.Figure:
    """Lay a figure out (unless it lays itself out), save it, close it (the notebook displays the returned figure once) and return it."""
    if not isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine):
        fig.tight_layout()
    save(fig, name, profile)
    plt.close(fig)
    return fig


def _to_hwc(img: torch.Tensor) -> np.ndarray:
    """A (C, H, W) uint8 image as an array imshow understands."""
    arr = img.permute(1, 2, 0).cpu().numpy()
    return arr[..., 0] if arr.shape[-1] == 1 else arr


def image_grid(images: torch.Tensor, titles: list[str], ncols: int = 8, title: str = "") -> plt.Figure:
    """A grid of uint8 images with a caption under each."""
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.5 * ncols, 1.9 * nrows + 0.4), squeeze=False, layout="constrained")
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, caption in zip(axes.flat, images, titles):
        ax.imshow(_to_hwc(img), cmap="gray" if img.shape[0] == 1 else None)
        ax.set_title(caption, fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def sample_grid(x: torch.Tensor, y: torch.Tensor, classes: tuple[str, ...], per_class: int = 4, title: str = "") -> plt.Figure:
    """The first few images of every class, one class per column."""
    picks = [i for c in range(len(classes)) for i in torch.nonzero(y == c).flatten()[:per_class].tolist()]
    order = [picks[c * per_class + r] for r in range(per_class) for c in range(len(classes))]
    return image_grid(x[order], [classes[int(y[i])] for i in order], ncols=len(classes), title=title)


def class_balance(counts: pd.DataFrame, title: str = "") -> plt.Figure:
    """Bars of images per class for each split; counts has columns class, split, images."""
    fig, ax = plt.subplots(figsize=(9, 3.2))
    sns.barplot(data=counts, x="class", y="images", hue="split", ax=ax)
    ax.set(xlabel="class", ylabel="images", title=title)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def curves(history: list[dict], curve: list[dict], title: str = "") -> plt.Figure:
    """Loss per epoch, and validation accuracy within epochs (a fixed slice of the validation split) beside the per-epoch values."""
    df, points = pd.DataFrame(history), pd.DataFrame(curve)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4.2))
    # Training numbers are running means over augmented batches with label smoothing, hence above validation loss.
    for split, style, label in (("train", "-", "train (augmented, label-smoothed)"), ("val", "--", "validation")):
        ax_loss.plot(df["epoch"], df[f"{split}_loss"], style, marker="o", label=label)
        ax_acc.plot(df["epoch"], df[f"{split}_acc"] * 100, style, marker="o", label=f"{label}, epoch end")
    if not points.empty:
        ax_acc.plot(points["epoch"], points["val_acc"] * 100, ":", marker=".", label="validation slice, within epochs")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):  # below the axes, where no point of a climbing curve can hide behind them
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), frameon=False, fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion(cm: list[list[int]], classes: tuple[str, ...], title: str = "") -> plt.Figure:
    """A confusion-matrix heatmap with counts."""
    fig, ax = plt.subplots(figsize=(7, 6))
    sns.heatmap(np.asarray(cm), annot=True, fmt="d", cmap="Blues", cbar=False, xticklabels=classes, yticklabels=classes, ax=ax)
    ax.set(xlabel="predicted class", ylabel="true class", title=title)
    fig.tight_layout()
    return fig


def confident_errors(y_true: torch.Tensor, y_pred: torch.Tensor, confidence: torch.Tensor, limit: int = 16) -> list[int]:
    """Indices of the most confident mistakes, spread over the true classes: each class's surest error first, in turn."""
    wrong = torch.nonzero(y_true != y_pred).flatten()
    by_class = [sorted(wrong[y_true[wrong] == c].tolist(), key=lambda i: -float(confidence[i])) for c in torch.unique(y_true[wrong]).tolist()]
    by_class.sort(key=lambda idx: -float(confidence[idx[0]]))  # the class with the surest mistake leads each round
    rounds = [idx[r] for r in range(max(map(len, by_class), default=0)) for idx in by_class if r < len(idx)]
    return rounds[:limit]


def misclassified(x: torch.Tensor, y_true: torch.Tensor, y_pred: torch.Tensor, confidence: torch.Tensor, classes: tuple[str, ...],
                  limit: int = 16, title: str = "") -> plt.Figure:
    """The most confident misclassified test images, spread over the classes, captioned 'true → predicted (probability)'."""
    wrong = confident_errors(y_true, y_pred, confidence, limit)
    if not wrong:
        fig, ax = plt.subplots(figsize=(4, 1))
        ax.axis("off")
        ax.text(0.5, 0.5, "no misclassified test images", ha="center")
        return fig
    return image_grid(x[wrong], [f"{classes[int(y_true[i])]} → {classes[int(y_pred[i])]}\n(p = {float(confidence[i]):.2f})" for i in wrong],
                      title=title)
