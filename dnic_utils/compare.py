"""The comparative analysis of notebook 50: which runs are compared, their tables and significance tests, all from records.

Per dataset one profile is compared, never a mix: the highest profile (up to the notebook's) in which every registered
architecture has a default-parameter record, else the highest with the most. Records of the same recipe with other seeds
(the runner's --seeds) are grouped with the default run of their architecture.
"""

from __future__ import annotations

import itertools
from collections import Counter
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import stats
from .config import PROFILES, RunConfig, field_default, number, recipe_fields, tta_views, views_label, whole
from .data import dataset_info
from .devices import SHARED_CPU, device_label, wait_pct
from .errors import DnicError
from .models import REGISTRY, model_spec
from .records import scan_records, test_predictions
from .seeds import own_time
from .settings import result_roots
from .stats import ALPHA  # the family-wise error rate of the pairwise tests of one dataset

LATENCY_LOW = 1  # the batch of the single-image latency column


def records_of_kind(kind: str, roots: list[Path] | None = None) -> list[dict]:
    """Every record of one kind under the roots, the first root's copy winning; a file that cannot be read is named in a warning."""
    found: dict[tuple[str, str], dict] = {}
    for root in result_roots() if roots is None else roots:
        records, problems = scan_records(root)
        for problem in problems:
            warnings.warn(f"run record left out: {problem}", stacklevel=3)
        for record in records:
            if record["kind"] == kind:
                found.setdefault((record["profile"], record["name"]), record)
    return list(found.values())


def training_records(roots: list[Path] | None = None) -> list[dict]:
    """Every training record under the roots (records_of_kind 'train')."""
    return records_of_kind("train", roots)


def study_records(roots: list[Path] | None = None) -> list[dict]:
    """The hyper-parameter studies' records (notebook 45) under the roots."""
    return [r for r in records_of_kind("study", roots) if r["name"].startswith("hparams-")]


def seed_of(record: dict) -> int | None:
    """The record's seed if it is its architecture's default recipe with at most another seed; None for any other variant."""
    config = record["config"]
    try:
        expected = RunConfig(config["arch"], config["dataset"], record["profile"], seed=record["seed"], device="cpu").variant
    except DnicError:  # an architecture or dataset no longer registered
        return None
    return record["seed"] if config.get("variant", "") == expected else None


def current_recipe(record: dict) -> bool:
    """Whether a record was trained with its architecture's recipe as the registry defines it now (every field that names a run).

    A field the record lacks was added since, with a default that keeps the behaviour the record was trained with.
    """
    config = record["config"]
    try:
        now = RunConfig(config["arch"], config["dataset"], record["profile"], seed=record["seed"], device="cpu").to_dict()
    except DnicError:
        return False
    return all(config.get(f.name, field_default(f)) == now[f.name] for f in recipe_fields())


@dataclass
class Run:
    """One architecture of a comparison: its default run (seed 0) and the runs of its other seeds, as records."""

    arch: str
    records: list[dict]  # the default seed first

    @property
    def title(self) -> str:
        """The architecture's display name."""
        return model_spec(self.arch).title

    @property
    def default(self) -> dict:
        """The record of the default seed."""
        return self.records[0]


@dataclass
class Selection:
    """The runs compared on one dataset: one profile, one Run per architecture that has a default record there."""

    dataset: str
    profile: str | None
    runs: dict[str, Run] = field(default_factory=dict)  # registry order
    counts: dict[str, int] = field(default_factory=dict)  # per profile considered, the architectures with a default record
    dropped: list[str] = field(default_factory=list)  # records of further seeds left out: trained otherwise than their default run

    @property
    def title(self) -> str:
        """The dataset as its records name it ('CIFAR-10 (JPEG q75 copy)'), else its registry title."""
        if self.runs:
            return next(iter(self.runs.values())).default["data"].get("title") or dataset_info(self.dataset).title
        return dataset_info(self.dataset).title

    @property
    def missing(self) -> list[str]:
        """Registered architectures without a default record in the chosen profile."""
        return [model_spec(a).title for a in REGISTRY if a not in self.runs]

    def note(self) -> str:
        """Which profile is compared and why, and which architectures lack a record there."""
        if self.profile is None:
            return f"**{self.title}**: no training record in any profile up to this notebook's; nothing to compare."
        counted = ", ".join(f"`{p}` {n}" for p, n in self.counts.items())
        why = ("every registered architecture has a record there" if not self.missing else
               "no profile has a record of every architecture, so the highest with the most is used")
        seeds = sum(len(r.records) - 1 for r in self.runs.values())
        extra = f" {seeds} record(s) of further seeds are grouped with their architecture." if seeds else ""
        if self.dropped:
            extra += (f" Left out, as trained otherwise than their architecture's default run (another recipe, size or epoch count; "
                      f"the runner's --skip-done retrains them): {', '.join(self.dropped)}.")
        lacking = f" No record here for: {', '.join(self.missing)}." if self.missing else ""
        stale = [r.title for r in self.runs.values() if not current_recipe(r.default)]
        lacking += (f" Trained with an earlier recipe than the registry's now (their notebooks re-run in this profile would replace them): "
                    f"{', '.join(stale)}." if stale else "")
        sizes = sorted({r.default["data"].get("sizes", {}).get("test") for r in self.runs.values()} - {None})
        mixed = (f" The records' test sets differ in size ({', '.join(f'{n:,}' for n in sizes)} images): they were written under different "
                 "versions of the profile's sizes, and pairs on different test images are not tested." if len(sizes) > 1 else "")
        return (f"**{self.title}**: profile `{self.profile}` ({why}; architectures with a default record per profile: {counted}); "
                f"{len(self.runs)} of {len(REGISTRY)} architectures.{lacking}{extra}{mixed}")


def select(records: list[dict], dataset: str, profile: str) -> Selection:
    """The comparison on a dataset: among profiles up to `profile`, the highest where every architecture has a default record, else the highest with the most."""
    key = dataset_info(dataset).key
    groups: dict[str, dict[str, list[dict]]] = {}
    for record in records:
        seed = seed_of(record) if record["config"].get("dataset") == key and record["config"].get("arch") in REGISTRY else None
        if seed is not None and PROFILES[record["profile"]].rank <= PROFILES[profile].rank:
            groups.setdefault(record["profile"], {}).setdefault(record["config"]["arch"], []).append(record)
    counts = {p: sum(any(r["seed"] == 0 for r in rs) for rs in groups[p].values())
              for p in sorted(groups, key=lambda p: -PROFILES[p].rank)}
    if not counts or max(counts.values()) == 0:
        return Selection(key, None, counts=counts)
    chosen = max(counts, key=lambda p: (counts[p], PROFILES[p].rank))  # full coverage is the most; ties go to the higher profile
    runs, dropped = {}, []
    for arch in REGISTRY:
        seeds = sorted(groups[chosen].get(arch, []), key=lambda r: r["seed"])
        if seeds and seeds[0]["seed"] == 0:
            alike = [r for r in seeds[1:] if same_as_default(r, seeds[0])]
            dropped += [r["name"] for r in seeds[1:] if r not in alike]
            runs[arch] = Run(arch, [seeds[0], *alike])
    return Selection(key, chosen, runs, counts, dropped)


def same_as_default(record: dict, default: dict) -> bool:
    """Whether another seed's record was trained exactly as the default seed's (every recipe field, sizes and epochs too, but the seed)."""
    return all(record["config"].get(f.name, field_default(f)) == default["config"].get(f.name, field_default(f))
               for f in recipe_fields() if f.name != "seed")


def _correct(record: dict) -> np.ndarray | None:
    """Per test image, whether the run got it right; None for a record without predictions."""
    if "predictions" not in record:
        return None
    p = test_predictions(record)
    return p["y_pred"] == p["y_true"]


def timed_record(run: Run) -> dict:
    """The record whose training speed is shown: the default, unless it shared the CPU and a seed on its device and precision waited less."""
    def wait(record: dict) -> float:
        share = record["metrics"].get("train_cpu_wait")
        return np.inf if share is None else share

    default = run.default
    if wait(default) < SHARED_CPU:
        return default
    alike = [r for r in run.records if device_label(r["device"]) == device_label(default["device"])
             and r["metrics"].get("amp") == default["metrics"].get("amp")]
    return min(alike, key=wait)  # the default first, so it stays on a tie


def summary(selection: Selection, resamples: int = 2000) -> pd.DataFrame:
    """One row per architecture, numbers only: accuracy over seeds with its bootstrap interval, F1, costs, speed, device, precision."""
    whole(1)("bootstrap_resamples", resamples)
    largest = [max(map(int, r.default["metrics"]["latency_ms"])) for r in selection.runs.values() if r.default["metrics"].get("latency_ms")]
    top = Counter(largest).most_common(1)[0][0] if largest else LATENCY_LOW  # the profile's larger latency batch, as most records have it
    rows = []
    flip = dataset_info(selection.dataset).flip
    for run in selection.runs.values():
        m = run.default["metrics"]
        timed = timed_record(run)
        t = timed["metrics"]
        tta = run.default["config"].get("tta") or "off"
        views = tta_views(tta, flip)
        accs = [r["metrics"]["test_acc"] for r in run.records]
        mean, std = stats.mean_std(accs)
        correct = [c for c in map(_correct, run.records) if c is not None]
        same = [c for c in correct if len(correct) and len(c) == len(correct[0])]
        low, high = stats.bootstrap_accuracy(np.stack(same), resamples) if same else (np.nan, np.nan)
        latency = {int(b): v for b, v in m.get("latency_ms", {}).items()}
        single = latency.get(LATENCY_LOW, np.nan)
        rows.append({
            "model": run.title, "arch": run.arch, "dataset": selection.dataset, "family": REGISTRY[run.arch].family, "seeds": len(run.records),
            "acc": mean, "acc_std": std, "ci_low": low, "ci_high": high,
            "macro_f1": float(np.mean([r["metrics"]["macro_f1"] for r in run.records])),
            "params": m["params"], "size_mb": m["size_mb"], "flops": m["flops"], "train_time_s": t["train_time_s"],
            "images_per_s": t["images_per_s"], "cpu_wait": np.nan if t.get("train_cpu_wait") is None else t["train_cpu_wait"],
            "timed_seed": timed["seed"], "own_train_s": own_time(run.default), "latency_1": single, "latency_top": latency.get(top, np.nan),
            "tta": tta, "views": views, "tested_flops": views * m["flops"], "tested_latency": views * single,  # what the accuracy cost per image
            "latency_top_batch": top, "device": device_label(run.default["device"]), "precision": m.get("amp", "?"),
            "epochs": run.default["config"].get("epochs"), "train_images": run.default["data"].get("sizes", {}).get("train"),
            "test_images": run.default["data"].get("sizes", {}).get("test"),
        })
    columns = ["model", "arch", "dataset", "family", "seeds", "acc", "acc_std", "ci_low", "ci_high", "macro_f1", "params", "size_mb", "flops",
               "train_time_s", "images_per_s", "cpu_wait", "timed_seed", "own_train_s", "latency_1", "latency_top", "latency_top_batch", "tta", "views", "tested_flops",
               "tested_latency", "device", "precision", "epochs",
               "train_images", "test_images"]
    return pd.DataFrame(rows, columns=columns).sort_values("acc", ascending=False).set_index("model")


def _pct(value: float, digits: int = 2) -> str:
    """A fraction as a percentage, or '—' when unknown."""
    return "—" if value is None or np.isnan(value) else f"{100 * value:.{digits}f}"


def leaderboard(table: pd.DataFrame) -> pd.DataFrame:
    """The summary as the compact display table: accuracy (mean ± std over seeds) with its 95% bootstrap interval, costs, training budget, speed."""
    top = int(table["latency_top_batch"].iloc[0]) if len(table) else LATENCY_LOW

    def accuracy(row: pd.Series) -> str:
        """'91.20' or '91.20 ± 0.30 (3 seeds)'."""
        return _pct(row["acc"]) + (f" ± {100 * row['acc_std']:.2f} ({row['seeds']} seeds)" if row["seeds"] > 1 else "")

    return pd.DataFrame({
        "test acc (%)": table.apply(accuracy, axis=1),
        "95% CI over test images (%)": [f"{_pct(lo)}–{_pct(hi)}" if not np.isnan(lo) else "—" for lo, hi in zip(table["ci_low"], table["ci_high"])],
        "macro F1 (%)": table["macro_f1"].map(_pct),
        "test views": [views_label(v, t) for v, t in zip(table["views"], table["tta"])],
        "params": table["params"].map("{:,}".format),
        "MB": table["size_mb"].map("{:.1f}".format),
        "MFLOPs": (table["flops"] / 1e6).map("{:,.1f}".format),
        "epochs": table["epochs"].map(lambda v: "—" if pd.isna(v) else f"{int(v)}"),
        "train images": table["train_images"].map(lambda v: "—" if pd.isna(v) else f"{int(v):,}"),
        "train time (s)": [f"{v:,.1f}" + (f" (seed {s})" if s else "") for v, s in zip(table["train_time_s"], table["timed_seed"])],
        "train images/s": table["images_per_s"].map("{:,.0f}".format),
        "CPU wait (%)": table["cpu_wait"].map(wait_pct),
        "latency @1 (ms)": table["latency_1"].map(lambda v: "—" if np.isnan(v) else f"{v:.2f}"),
        f"latency @{top} (ms)": table["latency_top"].map(lambda v: "—" if np.isnan(v) else f"{v:,.1f}"),
        "device": table["device"], "precision": table["precision"],
    }, index=table.index)


# The inference costs are those of the accuracy plotted against them: a test-time augmented accuracy costs its views' passes
COSTS = {"params": "parameters", "tested_flops": "FLOPs per test image (× test views)", "tested_latency": "latency at batch 1 × test views (ms)",
         "train_time_s": "training time (s)"}


def pareto_front(cost: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """True where no other point is at least as cheap and at least as accurate, and strictly better in one (NaN costs are never on it)."""
    cost, accuracy = np.asarray(cost, dtype=float), np.asarray(accuracy, dtype=float)
    on = ~np.isnan(cost) & ~np.isnan(accuracy)
    for i in np.flatnonzero(on):
        others = on & (cost <= cost[i]) & (accuracy >= accuracy[i]) & ((cost < cost[i]) | (accuracy > accuracy[i]))
        on[i] = not others.any()
    return on


def front_names(table: pd.DataFrame, cost: str) -> list[str]:
    """The models on the accuracy–cost Pareto front, cheapest first."""
    front = table[pareto_front(table[cost].to_numpy(), table["acc"].to_numpy())]
    return list(front.sort_values(cost).index)


def training_curves(selection: Selection) -> pd.DataFrame:
    """The default runs' validation points within training: model, images seen, training time, validation accuracy."""
    frames = [pd.DataFrame(run.default["curve"]).assign(model=run.title) for run in selection.runs.values() if run.default.get("curve")]
    columns = ["model", "images_seen", "train_time_s", "val_acc"]
    return pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)


# ----------------------------------------------------------------------------------------------------------------------
# Significance


def significance(selection: Selection, alpha: float = ALPHA) -> pd.DataFrame:
    """McNemar's test for every pair of default runs with predictions on the same test images, Holm-corrected over the pairs."""
    number(0, 1, low_open=True)("alpha", alpha)
    predictions = {run.title: test_predictions(run.default) for run in selection.runs.values() if "predictions" in run.default}
    rows = []
    for a, b in itertools.combinations(predictions, 2):
        pa, pb = predictions[a], predictions[b]
        if len(pa["y_true"]) != len(pb["y_true"]) or not np.array_equal(pa["y_true"], pb["y_true"]):
            continue  # different test images (a record from before a change of the profile's sizes): not comparable
        ca, cb = pa["y_pred"] == pa["y_true"], pb["y_pred"] == pb["y_true"]
        test = stats.mcnemar(ca, cb)
        rows.append({"a": a, "b": b, "acc_a": float(ca.mean()), "acc_b": float(cb.mean()), "only_a": test.only_a, "only_b": test.only_b,
                     "test": test.test, "p": test.p_value, "images": len(ca)})
    table = pd.DataFrame(rows, columns=["a", "b", "acc_a", "acc_b", "only_a", "only_b", "test", "p", "images"])
    table["p_holm"] = stats.holm(table["p"].to_numpy())
    table["significant"] = table["p_holm"] < alpha
    table["better"] = [(a if oa > ob else b) if sig else None
                       for a, b, oa, ob, sig in zip(table["a"], table["b"], table["only_a"], table["only_b"], table["significant"])]
    return table


def pvalue_matrix(pairs: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Holm-corrected p-values as a symmetric models × models table (NaN where a pair was not tested), in the given order."""
    matrix = pd.DataFrame(np.nan, index=order, columns=order)
    for row in pairs.itertuples():
        matrix.loc[row.a, row.b] = matrix.loc[row.b, row.a] = row.p_holm
    return matrix


# ----------------------------------------------------------------------------------------------------------------------
# Seeds, calibration, classes


def seed_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per model in ranking order: seeds, mean and spread of accuracy (pp), and the gap to the next-ranked model (pp)."""
    ranked = table.sort_values("acc", ascending=False)
    gaps = (ranked["acc"] - ranked["acc"].shift(-1)) * 100
    return pd.DataFrame({"seeds": ranked["seeds"], "mean acc (%)": (ranked["acc"] * 100).round(2),
                         "std across seeds (pp)": (ranked["acc_std"] * 100).round(2), "gap to next (pp)": gaps.round(2)})


def seed_accuracies(selection: Selection) -> pd.DataFrame:
    """Test accuracy of every seed of every model: columns model, seed, acc."""
    return pd.DataFrame([{"model": run.title, "seed": r["seed"], "acc": r["metrics"]["test_acc"]}
                         for run in selection.runs.values() for r in run.records], columns=["model", "seed", "acc"])


def calibration(selection: Selection) -> tuple[pd.DataFrame, dict[str, dict[str, np.ndarray]]]:
    """Per default run with predictions, the ECE (15 bins) and mean confidence, and its reliability-diagram data."""
    rows, diagrams = [], {}
    for run in selection.runs.values():
        if "predictions" not in run.default:
            continue
        p = test_predictions(run.default)
        correct, confidence = p["y_pred"] == p["y_true"], p["confidence"].astype(float)
        diagrams[run.title] = stats.reliability(confidence, correct)
        rows.append({"model": run.title, "ECE (%)": 100 * stats.expected_calibration_error(confidence, correct),
                     "mean confidence (%)": 100 * confidence.mean(), "accuracy (%)": 100 * correct.mean()})
    table = pd.DataFrame(rows, columns=["model", "ECE (%)", "mean confidence (%)", "accuracy (%)"]).set_index("model")
    return table.sort_values("ECE (%)").round(2), diagrams


def per_class_f1(selection: Selection) -> pd.DataFrame:
    """Per-class F1 (%) of every default run, models × classes, from its test confusion matrix."""
    classes = list(dataset_info(selection.dataset).classes)
    rows = {}
    for run in selection.runs.values():
        cm = np.asarray(run.default["metrics"]["confusion"], dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.nan_to_num(2 * np.diag(cm) / (cm.sum(0) + cm.sum(1)))
        rows[run.title] = 100 * f1
    return pd.DataFrame.from_dict(rows, orient="index", columns=classes)


def shared_confusions(selection: Selection, k: int = 3) -> pd.DataFrame:
    """The k (true → predicted) confusions the models share most: by the least share of the true class any model sends there, then the mean share."""
    classes = dataset_info(selection.dataset).classes
    rates = []
    for run in selection.runs.values():
        cm = np.asarray(run.default["metrics"]["confusion"], dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            rates.append(np.nan_to_num(cm / cm.sum(1, keepdims=True)))
    columns = ["true class", "predicted", "least share (%)", "mean share (%)"]
    if not rates:
        return pd.DataFrame(columns=columns)
    stack = np.stack(rates)
    least, mean = stack.min(0), stack.mean(0)
    off = [(i, j) for i in range(len(classes)) for j in range(len(classes)) if i != j and mean[i, j] > 0]
    top = sorted(off, key=lambda ij: (-least[ij], -mean[ij]))[:k]
    return pd.DataFrame([{"true class": classes[i], "predicted": classes[j], "least share (%)": round(100 * least[i, j], 1),
                          "mean share (%)": round(100 * mean[i, j], 1)} for i, j in top], columns=columns)


# ----------------------------------------------------------------------------------------------------------------------
# The seeds' numbers (literature, not this report's results)

# What the seed projects reported: values from their write-ups, quoted, not produced here. They trained on the original
# (lossless) datasets, often from ImageNet weights, with their own schedules; this report trains from scratch, on the JPEG
# copy of CIFAR-10, at the stated profile's budget. A row compares settings as much as architectures.
LITERATURE = (
    {"arch": "vgg16", "dataset": "mnist", "acc": 0.9893, "source": "seed 001",
     "setting": "as reported by the seed (its own schedule; ImageNet weights where it used them)", "data": "MNIST (original files)"},
    {"arch": "resnet50", "dataset": "cifar10", "acc": 0.7358, "source": "seed 001",
     "setting": "as reported by the seed (its own schedule; ImageNet weights where it used them)", "data": "CIFAR-10 (original, lossless)"},
    {"arch": "mobilenet_v2", "dataset": "cifar10", "acc": 0.7230, "source": "seed 001",
     "setting": "as reported by the seed (its own schedule; ImageNet weights where it used them)", "data": "CIFAR-10 (original, lossless)"},
    {"arch": "weightedsumnet", "dataset": "cifar10", "acc": 0.8733, "source": "seed 002",
     "setting": "the seed's custom network, as reported by it", "data": "CIFAR-10 (original, lossless)"},
    {"arch": "minigooglenet", "dataset": "cifar10", "acc": 0.9004, "source": "seed 003",
     "setting": "as reported by the seed (its own schedule)", "data": "CIFAR-10 (original, lossless)"},
    {"arch": "lenet5", "dataset": "mnist", "acc": 0.9936, "source": "seed 003",
     "setting": "as reported by the seed (first of its two LeNet figures)", "data": "MNIST (original files)"},
    {"arch": "lenet5", "dataset": "mnist", "acc": 0.994, "source": "seed 003",
     "setting": "as reported by the seed (second of its two LeNet figures)", "data": "MNIST (original files)"},
)


def literature_table(summaries: dict[str, pd.DataFrame], selections: dict[str, Selection]) -> pd.DataFrame:
    """The seeds' reported accuracies, each labelled with source, setting and data, beside this report's number for the same pair."""
    rows = []
    for ref in LITERATURE:
        selection, table = selections.get(ref["dataset"]), summaries.get(ref["dataset"])
        title = model_spec(ref["arch"]).title
        ours = table.loc[title] if table is not None and title in table.index else None
        images = f"{int(ours['train_images']):,}" if ours is not None and pd.notna(ours["train_images"]) else "an unrecorded number of"
        ours_setting = (f"profile `{selection.profile}`: {ours['epochs']} epoch(s), {images} training images, from scratch; "
                        f"mean of {int(ours['seeds'])} seed(s), {int(ours['views'])} test view(s) per image"
                        if ours is not None else "no record in the compared profile")
        rows.append({"model": title, "dataset": dataset_info(ref["dataset"]).title, "reported (%)": f"{100 * ref['acc']:.2f}",
                     "source": ref["source"], "their setting": ref["setting"], "their data": ref["data"],
                     "ours (%)": _pct(ours["acc"]) if ours is not None else "—", "our setting": ours_setting,
                     "our data": selection.title if ours is not None else "—"})
    return pd.DataFrame(rows)

