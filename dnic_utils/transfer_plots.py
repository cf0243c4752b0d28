"""The figures of the transfer-learning study (notebook 40), each saved under figures/<profile>/ with a stable name."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from . import plots
from .data import dataset_info
from .transfer_study import ALL, FROZEN, SCRATCH, YOSINSKI, part_b_means

# Yosinski et al.'s Fig. 2 colours: the selffer (BnB) in blues, the transfer (AnB) in reds; frozen dark, fine-tuned light
STYLE = {"baseB": ("white", "o"), "BnB": ("#1f4e9c", "o"), "BnB+": ("#7fb2e5", "o"), "AnB": ("#b2182b", "D"), "AnB+": ("#f4a582", "D")}


def part_a(table: pd.DataFrame, profile: str, title: str) -> plt.Figure:
    """Part A in four panels: treatments, input size, schedule, and label budget (test accuracy in each)."""
    plots.set_style()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    treat = table[table["arm"] == "treatment"]
    axes[0, 0].barh(treat["treatment"], 100 * treat["test_acc"], color=sns.color_palette("deep", len(treat)))
    axes[0, 0].set(xlabel="test accuracy (%)", ylabel="", title="what is trained")
    sizes = table[table["arm"] == "input size"].sort_values("size")
    axes[0, 1].plot(sizes["size"], 100 * sizes["test_acc"], marker="o")
    axes[0, 1].set(xlabel="input size (px, upsampled from 32)", ylabel="test accuracy (%)", title=FROZEN, xticks=sizes["size"].tolist())
    sched = table[table["arm"] == "schedule"]
    axes[1, 0].bar(sched["schedule"], 100 * sched["test_acc"], color=sns.color_palette("deep", len(sched)))
    axes[1, 0].set(xlabel="learning-rate schedule", ylabel="test accuracy (%)", title=ALL)
    labels = table[table["arm"] == "labels"].sort_values("fraction")
    axes[1, 1].plot(100 * labels["fraction"], 100 * labels["test_acc"], marker="o")
    axes[1, 1].set_xscale("log")
    axes[1, 1].set(xlabel="training labels used (% of the pool, log scale)", ylabel="test accuracy (%)", title=FROZEN)
    fig.suptitle(title)
    return plots.saved(fig, "transfer-imagenet-cifar10", profile)


def yosinski(table: pd.DataFrame, profile: str, title: str) -> plt.Figure:
    """Accuracy against the cut n in the manner of Yosinski et al.'s Fig. 2: a marker per run, the mean over seeds as a line."""
    plots.set_style()
    splits = list(dict.fromkeys(table["split"]))
    fig, axes = plt.subplots(1, len(splits), figsize=(6.5 * len(splits), 4.8), squeeze=False, sharey=True)
    means = part_b_means(table)
    for ax, split in zip(axes[0], splits):
        runs, avg = table[table["split"] == split], means[means["split"] == split]
        base = avg[avg["treatment"] == "baseB"]["acc"].iloc[0]
        ax.axhline(100 * base, color="grey", lw=1, ls="--", zorder=1)
        for offset, treatment in zip(np.linspace(-0.15, 0.15, len(STYLE)), STYLE):
            colour, marker = STYLE[treatment]
            points = runs[runs["treatment"] == treatment]
            ax.scatter(points["n"] + offset, 100 * points["test_acc"], c=colour, marker=marker, edgecolors="black", linewidths=0.6, s=36,
                       zorder=3, label=treatment)
            line = avg[avg["treatment"] == treatment].sort_values("n")
            if treatment in YOSINSKI:
                ax.plot(line["n"], 100 * line["acc"], color=colour, lw=1.6, zorder=2)
        ax.set(xlabel="layers (stages) copied, n", ylabel="test accuracy on B (%)", xticks=sorted(runs["n"].unique()),
               title="random 5/5 split" if split == "random" else "vehicles (A) → animals (B)")
        ax.legend(fontsize=8, loc="lower left")
    fig.suptitle(title)
    return plots.saved(fig, "transfer-yosinski", profile)


def part_c(table: pd.DataFrame, profile: str, title: str) -> plt.Figure:
    """Test accuracy against labels per class on each target dataset, one line per treatment."""
    plots.set_style()
    rows = table[table["treatment"] != "source"]
    datasets = list(dict.fromkeys(rows["dataset"]))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6.5 * len(datasets), 4.5), squeeze=False, sharey=True)
    for ax, dataset in zip(axes[0], datasets):
        part = rows[rows["dataset"] == dataset]
        for treatment in (SCRATCH, "frozen", "fine-tuned"):
            line = part[part["treatment"] == treatment].sort_values("labels per class")
            ax.plot(line["labels per class"], 100 * line["test_acc"], marker="o", label=treatment)
        ax.set_xscale("log")
        ax.set(xlabel="labels per class (log scale)", ylabel="test accuracy (%)", title=dataset_info(dataset).title,
               xticks=sorted(part["labels per class"].unique()))
        ax.set_xticklabels([f"{k:,}" for k in sorted(part["labels per class"].unique())])
        ax.legend(fontsize=8)
    fig.suptitle(title)
    return plots.saved(fig, "transfer-low-label", profile)
