"""The data-exploration study: sources, count checks, pixel statistics, sample grids and class balance."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from . import plots
from .config import PROFILES
from .data import DATASETS, DatasetInfo, RawData, channel_stats, dataset_info, dataset_title, load_raw, validation_split
from .devices import default_device
from .records import make_record, write_record


@dataclass
class Study:
    """The datasets of the exploration, each decoded (or read from the cache) once."""

    raw: dict[str, RawData]
    started: float = field(default_factory=time.perf_counter)

    def items(self) -> list[tuple[DatasetInfo, RawData, str]]:
        """(info, data, display title) for each dataset, in the order given."""
        return [(dataset_info(k), r, dataset_title(dataset_info(k), r.source)) for k, r in self.raw.items()]

    def overview(self) -> pd.DataFrame:
        """One row per dataset: source, sizes, shape, classes and lossiness."""
        return pd.DataFrame([
            {"dataset": title, "source": raw.source["kind"], "train images": len(raw.train_y), "test images": len(raw.test_y),
             "image shape (C×H×W)": "×".join(map(str, raw.train_x.shape[1:])), "classes": len(info.classes), "lossy copy": bool(raw.source["lossy"])}
            for info, raw, title in self.items()
        ]).set_index("dataset")

    def count_checks(self) -> pd.DataFrame:
        """Split sizes against the canonical ones, and how closely the validation split keeps the class shares."""
        rows = []
        for info, raw, title in self.items():
            _, val_idx = validation_split(info, raw.train_y, PROFILES["full"].val_size)
            share = torch.bincount(raw.train_y[val_idx], minlength=len(info.classes)) / len(val_idx)
            full = torch.bincount(raw.train_y, minlength=len(info.classes)) / len(raw.train_y)
            rows.append({
                "dataset": title, "train (expected)": info.sizes[0], "train (found)": len(raw.train_y),
                "test (expected)": info.sizes[1], "test (found)": len(raw.test_y),
                "validation split (full profile)": len(val_idx),
                "max class-share gap (pp)": round(100 * float((share - full).abs().max()), 3),
                "ok": (len(raw.train_y), len(raw.test_y)) == info.sizes,
            })
        return pd.DataFrame(rows).set_index("dataset")

    def pixel_stats(self) -> pd.DataFrame:
        """Per-channel mean and standard deviation of the full train and test sets."""
        rows = []
        for info, raw, title in self.items():
            channels = ["grey"] if info.channels == 1 else ["R", "G", "B"]
            for split, x in (("train", raw.train_x), ("test", raw.test_x)):
                mean, std = channel_stats(x)
                rows += [{"dataset": title, "split": split, "channel": c, "mean": m, "std": s} for c, m, s in zip(channels, mean, std)]
        return pd.DataFrame(rows).set_index(["dataset", "split", "channel"])

    def class_counts(self, key: str) -> pd.DataFrame:
        """Images per class in the full train and test sets, in long form (class, split, images)."""
        info, raw = dataset_info(key), self.raw[key]
        return pd.DataFrame([
            {"class": c, "split": split, "images": n}
            for split, y in (("train", raw.train_y), ("test", raw.test_y))
            for c, n in zip(info.classes, torch.bincount(y, minlength=len(info.classes)).tolist())
        ])

    def save_figures(self, profile: str) -> dict[str, plt.Figure]:
        """Sample grids and class-balance bars of every dataset, saved under figures/<profile>/."""
        plots.set_style()
        figures = {}
        for info, raw, title in self.items():
            figures[f"data-{info.key}-samples"] = plots.sample_grid(raw.train_x, raw.train_y, info.classes, title=f"{title}: training samples")
            figures[f"data-{info.key}-balance"] = plots.class_balance(self.class_counts(info.key), title=f"{title}: images per class")
        for stem, fig in figures.items():
            plots.saved(fig, stem, profile)
        return figures

    def write_record(self, profile: str, stats: pd.DataFrame) -> str:
        """Write the exploration's run record (sources, checksums, statistics, counts) and return its path."""
        metrics = {"pixel_stats": stats.reset_index().to_dict(orient="records"),
                   "class_counts": {key: self.class_counts(key).to_dict(orient="records") for key in self.raw}}
        record = make_record("data", "data-exploration", profile, {"datasets": list(self.raw)}, metrics, device=default_device(),
                             data={key: raw.source for key, raw in self.raw.items()}, seed=0, wall_time_s=time.perf_counter() - self.started)
        return str(write_record(record))


def load(datasets: list[str], data_dir: str | None = None) -> Study:
    """Decode (or read from the cache) each dataset once for the study."""
    return Study({dataset_info(name).key: load_raw(name, data_dir) for name in datasets})


SMALL_SHIFT = 0.05  # a train-test gap of the means under this share of the training standard deviation counts as none


def discussion(stats: pd.DataFrame) -> str:
    """What the statistics imply for training, with the numbers taken from the table."""
    lines = []
    for dataset, part in stats.groupby(level="dataset", sort=False):
        train, test = part.xs("train", level="split"), part.xs("test", level="split")
        gaps = np.abs(train["mean"].to_numpy() - test["mean"].to_numpy())
        shift = float((gaps / train["std"].to_numpy()).max())  # the largest gap in units of its channel's training standard deviation
        means = ", ".join(f"{c} {m:.4f}" for c, m in train["mean"].droplevel("dataset").items())
        verdict = ("so normalising with training statistics suits the test set too" if shift < SMALL_SHIFT else
                   "so the test inputs arrive shifted after normalising with training statistics")
        lines.append(f"- **{dataset}**: training mean {means}; train and test means differ by at most {float(gaps.max()):.4f} "
                     f"({shift:.1%} of a training standard deviation), {verdict}.")
    flipped = [info.title for info in DATASETS.values() if info.flip]
    kept = [info.title for info in DATASETS.values() if not info.flip]
    lines.append(f"- Training augmentation mirrors the images of {' and '.join(flipped) or 'no dataset'}; never those of "
                 f"{' and '.join(kept) or 'any'}, whose labels a mirror would change (a mirrored 2 is not a 2).")
    return "\n".join(lines)
