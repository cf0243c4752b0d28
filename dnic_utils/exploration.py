"""The data-exploration study: sources, count checks, pixel statistics, sample grids and class balance."""

from __future__ import annotations

import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from . import plots
from .config import PROFILES, default_device
from .data import dataset_info, dataset_title, load_raw, load_splits, channel_stats
from .records import make_record
from .records import write_record as _write
from .report import dataset_summary

CANONICAL_SIZES = {"mnist": (60_000, 10_000), "fashion_mnist": (60_000, 10_000), "cifar10": (50_000, 10_000)}


def overview(datasets: list[str], data_dir: str | None = None) -> pd.DataFrame:
    """One row per dataset: source, lossiness, sizes, shape and classes."""
    return pd.concat([dataset_summary(d, data_dir) for d in datasets])


def count_checks(datasets: list[str], data_dir: str | None = None) -> pd.DataFrame:
    """Split sizes against the canonical ones, and the validation split's largest deviation from stratification."""
    rows = []
    for name in datasets:
        info, raw = dataset_info(name), load_raw(name, data_dir)
        splits = load_splits(name, val_size=PROFILES["full"].val_size, root=data_dir)
        share = torch.bincount(splits.val_y, minlength=len(info.classes)) / len(splits.val_y)
        full = torch.bincount(raw.train_y, minlength=len(info.classes)) / len(raw.train_y)
        expected = CANONICAL_SIZES[info.key]
        rows.append({
            "dataset": dataset_title(info, raw.source), "train (expected)": expected[0], "train (found)": len(raw.train_y),
            "test (expected)": expected[1], "test (found)": len(raw.test_y), "validation split (full profile)": len(splits.val_y),
            "max class-share gap (pp)": round(100 * float((share - full).abs().max()), 3),
            "ok": (len(raw.train_y), len(raw.test_y)) == expected,
        })
    return pd.DataFrame(rows).set_index("dataset")


def pixel_stats(datasets: list[str], data_dir: str | None = None) -> pd.DataFrame:
    """Per-channel mean and standard deviation of the full train and test sets."""
    rows = []
    for name in datasets:
        info, raw = dataset_info(name), load_raw(name, data_dir)
        channels = ["grey"] if info.channels == 1 else ["R", "G", "B"]
        for split, x in (("train", raw.train_x), ("test", raw.test_x)):
            mean, std = channel_stats(x)
            rows += [{"dataset": dataset_title(info, raw.source), "split": split, "channel": c, "mean": m, "std": s}
                     for c, m, s in zip(channels, mean, std)]
    return pd.DataFrame(rows).set_index(["dataset", "split", "channel"])


def class_counts(name: str, data_dir: str | None = None) -> pd.DataFrame:
    """Images per class in the full train and test sets, in long form (class, split, images)."""
    info, raw = dataset_info(name), load_raw(name, data_dir)
    rows = []
    for split, y in (("train", raw.train_y), ("test", raw.test_y)):
        rows += [{"class": c, "split": split, "images": n} for c, n in zip(info.classes, torch.bincount(y, minlength=len(info.classes)).tolist())]
    return pd.DataFrame(rows)


def save_figures(datasets: list[str], profile: str, data_dir: str | None = None) -> dict[str, plt.Figure]:
    """Sample grids and class-balance bars of every dataset, saved under figures/<profile>/."""
    plots.set_style()
    figures = {}
    for name in datasets:
        info, raw = dataset_info(name), load_raw(name, data_dir)
        title = dataset_title(info, raw.source)
        figures[f"data-{info.key}-samples"] = plots.sample_grid(raw.train_x, raw.train_y, info.classes, title=f"{title}: training samples")
        figures[f"data-{info.key}-balance"] = plots.class_balance(class_counts(name, data_dir), title=f"{title}: images per class")
    for stem, fig in figures.items():
        plots.save(fig, stem, profile)
        plt.close(fig)
    return figures


def write_record(datasets: list[str], profile: str, data_dir: str | None, stats: pd.DataFrame) -> str:
    """Write the exploration's run record (sources, checksums, statistics) and return its path."""
    start = time.perf_counter()
    sources = {name: load_raw(name, data_dir).source for name in datasets}
    metrics = {"pixel_stats": stats.reset_index().to_dict(orient="records"),
               "class_counts": {n: class_counts(n, data_dir).to_dict(orient="records") for n in datasets}}
    record = make_record("data", "data-exploration", profile, {"datasets": datasets}, metrics, device=default_device(),
                         data=sources, seed=0, wall_time_s=time.perf_counter() - start)
    return str(_write(record))


def discussion(stats: pd.DataFrame) -> str:
    """What the statistics imply for training, with the numbers taken from the table."""
    lines = []
    for dataset, part in stats.groupby(level="dataset", sort=False):
        train = part.xs("train", level="split")
        test = part.xs("test", level="split")
        gap = float(np.abs(train["mean"].to_numpy() - test["mean"].to_numpy()).max())
        means = ", ".join(f"{c} {m:.4f}" for c, m in train["mean"].droplevel("dataset").items())
        lines.append(f"- **{dataset}**: training mean {means}; train and test means differ by at most {gap:.4f}, "
                     "so normalising with training statistics suits the test set too.")
    lines.append("- Digits are never flipped during augmentation (a mirrored 2 is not a 2); Fashion-MNIST and CIFAR-10 are.")
    return "\n".join(lines)
