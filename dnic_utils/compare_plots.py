"""The figures of the comparative analysis (notebook 50), each saved under figures/<profile>/ with a stable name."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import plots
from .compare import COSTS, pareto_front


def costs(table: pd.DataFrame, title: str, name: str, profile: str) -> plt.Figure:
    """Accuracy against parameters, FLOPs, single-image latency and training time, each with its Pareto front drawn and named."""
    plots.set_style()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    palette = dict(zip(table.index, sns.color_palette("tab20", len(table))))
    for ax, (column, label) in zip(axes.flat, COSTS.items()):
        data = table.dropna(subset=[column])
        for model, row in data.iterrows():
            ax.scatter(row[column], 100 * row["acc"], color=palette[model], s=40, zorder=3)
            ax.annotate(model, (row[column], 100 * row["acc"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        front = data[pareto_front(data[column].to_numpy(), data["acc"].to_numpy())].sort_values(column)
        if len(front):
            ax.step(front[column], 100 * front["acc"], where="post", color="black", lw=1.2, ls="--", zorder=2,
                    label="Pareto front: " + ", ".join(front.index))
            ax.legend(fontsize=7, loc="lower right")
        ax.set_xscale("log")
        ax.set(xlabel=f"{label} (log scale)", ylabel="test accuracy (%)")
    fig.suptitle(title)
    return plots.saved(fig, name, profile)


def curves(points: pd.DataFrame, title: str, name: str, profile: str) -> plt.Figure:
    """Validation accuracy against images seen and against training time, one line per model."""
    plots.set_style()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    data = points.assign(val_pct=100 * points["val_acc"])
    sns.lineplot(data=data, x="images_seen", y="val_pct", hue="model", marker=".", ax=left, legend=False)
    sns.lineplot(data=data, x="train_time_s", y="val_pct", hue="model", marker=".", ax=right)
    left.set(xlabel="training images seen", ylabel="validation accuracy (%)")
    right.set(xlabel="training time (s)", ylabel="validation accuracy (%)")
    right.legend(fontsize=7, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.suptitle(title)
    return plots.saved(fig, name, profile)


def pvalues(matrix: pd.DataFrame, title: str, name: str, profile: str, alpha: float) -> plt.Figure:
    """A heatmap of Holm-corrected McNemar p-values, pairs below alpha outlined by colour (log scale)."""
    plots.set_style()
    size = max(5.0, 0.55 * len(matrix) + 2)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    shown = np.log10(matrix.clip(lower=1e-12).astype(float))
    sns.heatmap(shown, annot=matrix.map(lambda p: "" if np.isnan(p) else f"{p:.2g}"), fmt="", cmap="RdBu", center=np.log10(alpha),
                vmin=-6, vmax=0, cbar_kws={"label": f"log10 Holm-corrected p (red: below {alpha:g})"}, annot_kws={"fontsize": 7}, ax=ax)
    ax.set(xlabel="model", ylabel="model", title=title)
    return plots.saved(fig, name, profile)


def reliability(diagrams: dict[str, dict[str, np.ndarray]], title: str, name: str, profile: str) -> plt.Figure:
    """One reliability diagram per model: accuracy per confidence bin against the diagonal of perfect calibration."""
    plots.set_style()
    n = max(1, len(diagrams))
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False, sharex=True, sharey=True)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (model, d) in zip(axes.flat, diagrams.items()):
        ax.axis("on")
        centres = (d["edges"][:-1] + d["edges"][1:]) / 2
        filled = d["count"] > 0
        ax.bar(centres[filled], d["accuracy"][filled], width=np.diff(d["edges"])[filled], edgecolor="black", lw=0.4, label="accuracy")
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        ax.set(title=model, xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1))
        ax.title.set_fontsize(9)
    fig.suptitle(title)
    return plots.saved(fig, name, profile)


def per_class(f1: pd.DataFrame, title: str, name: str, profile: str) -> plt.Figure:
    """Per-class F1 (%) as a models × classes heatmap."""
    plots.set_style()
    fig, ax = plt.subplots(figsize=(1.0 * len(f1.columns) + 3, 0.45 * len(f1) + 2))
    sns.heatmap(f1, annot=True, fmt=".0f", cmap="viridis", vmin=0, vmax=100, cbar_kws={"label": "F1 (%)"}, annot_kws={"fontsize": 7}, ax=ax)
    ax.set(xlabel="class", ylabel="model", title=title)
    ax.tick_params(axis="x", rotation=30)
    return plots.saved(fig, name, profile)


def seeds(selection_accs: pd.DataFrame, title: str, name: str, profile: str) -> plt.Figure:
    """Test accuracy of every seed per model (columns model, seed, acc), models in ranking order: spread beside the gaps."""
    plots.set_style()
    order = list(selection_accs.groupby("model")["acc"].mean().sort_values(ascending=False).index)
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(order) + 1.8))
    sns.stripplot(data=selection_accs.assign(pct=100 * selection_accs["acc"]), x="pct", y="model", order=order, size=6, jitter=False, ax=ax)
    sns.pointplot(data=selection_accs.assign(pct=100 * selection_accs["acc"]), x="pct", y="model", order=order, errorbar=None,
                  markers="|", color="black", linestyles="none", ax=ax)
    ax.set(xlabel="test accuracy (%) per seed (bar: mean)", ylabel="model", title=title)
    return plots.saved(fig, name, profile)


def robustness(drops: pd.DataFrame, title: str, name: str, profile: str) -> plt.Figure:
    """The relative accuracy drop (%) per model and corruption, averaged over the three severities, as a heatmap."""
    plots.set_style()
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(drops) + 2))
    sns.heatmap(drops, annot=True, fmt=".1f", cmap="Reds", cbar_kws={"label": "relative drop (%)"}, annot_kws={"fontsize": 7}, ax=ax)
    ax.set(xlabel="corruption", ylabel="model", title=title)
    return plots.saved(fig, name, profile)
