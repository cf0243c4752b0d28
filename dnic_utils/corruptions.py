"""Common corruptions of uint8 image batches at three severities, and the accuracy of trained models under them."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import torch
import torchvision.transforms.v2.functional as F
from scipy.stats import binomtest

from .checkpoint import Trained, load_trained
from .compare import select, training_records
from .config import optional, whole
from .data import dataset_info, load_raw
from .devices import default_device
from .errors import DnicError
from .files import file_sha256
from .records import make_record, read_record, same_run, write_record
from .settings import checkpoint_dir

SEVERITIES = (1, 2, 3)
NOISE_SEED = 0  # Gaussian noise is drawn from this seed, so every model sees the same noisy images
# Test images per profile (a seeded subset, the same for every model). Each model is evaluated 16 times: on a 2-core CPU the
# budget default still takes minutes over every architecture (a GPU, seconds); the notebook's corruption_images overrides it
IMAGES = {"smoke": 16, "quick": 32, "budget": 200, "full": 2000}
ALPHA = 0.05  # a model ranks by robustness only if a one-sided binomial test puts its clean accuracy above chance at this level
COLUMNS = ["model", "images", "classes", "corruption", "severity", "accuracy", "relative drop"]
CLEAN = "clean accuracy, single pass (%)"
MEAN_DROP = "mean relative drop (%)"
UNRANKED = " (not above chance, unranked)"  # appended to the name of a model the drop table does not rank


def _noise(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Additive Gaussian noise of standard deviation sigma (in units of the full pixel range), clipped, from a fixed seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(NOISE_SEED)
        return F.gaussian_noise(images, sigma=sigma, clip=True)


def _blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of standard deviation sigma pixels, the kernel reaching 3 sigma."""
    size = 2 * math.ceil(3 * sigma) + 1
    return F.gaussian_blur(images, kernel_size=[size, size], sigma=[sigma, sigma])


def _jpeg(images: torch.Tensor, quality: float) -> torch.Tensor:
    """JPEG re-compression at a quality (torchvision's encoder; its notice that image coding moves to TorchCodec is silenced)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*TorchVision are deprecated")
        return F.jpeg(images, quality=int(quality))


@dataclass(frozen=True)
class Corruption:
    """One corruption: how it is applied to a uint8 batch and its parameter at severities 1, 2 and 3."""

    name: str
    apply: Callable[[torch.Tensor, float], torch.Tensor]
    levels: tuple[float, float, float]
    parameter: str  # what the level means, for the table


# Severities in the spirit of Hendrycks & Dietterich (2019, CIFAR-10-C), three steps from mild to strong.
CORRUPTIONS: dict[str, Corruption] = {c.name: c for c in (
    Corruption("gaussian noise", _noise, (0.04, 0.07, 0.10), "noise standard deviation (fraction of the pixel range)"),
    Corruption("blur", _blur, (0.5, 1.0, 1.5), "Gaussian blur sigma (pixels)"),
    Corruption("contrast", lambda x, v: F.adjust_contrast(x, contrast_factor=v), (0.6, 0.4, 0.2), "contrast factor"),
    Corruption("brightness", lambda x, v: F.adjust_brightness(x, brightness_factor=v), (1.3, 1.6, 2.0), "brightness factor"),
    Corruption("JPEG", _jpeg, (50, 25, 10), "JPEG quality"),
)}


def corrupt(images: torch.Tensor, name: str, severity: int) -> torch.Tensor:
    """A uint8 batch (N, C, H, W) with one corruption applied at severity 1, 2 or 3; the same shape and dtype."""
    if name not in CORRUPTIONS:
        raise DnicError(f"Unknown corruption {name!r}.", f"use one of: {', '.join(CORRUPTIONS)}.")
    if severity not in SEVERITIES:
        raise DnicError(f"Severity must be 1, 2 or 3, got {severity!r}.", "pass severity 1 (mild), 2 or 3 (strong).")
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise DnicError(f"Expected uint8 images shaped (N, C, H, W), got {images.dtype} {tuple(images.shape)}.",
                        "pass a uint8 batch with channels first.")
    corruption = CORRUPTIONS[name]
    return corruption.apply(images, corruption.levels[severity - 1])


def severity_table() -> pd.DataFrame:
    """The parameter of each corruption at each severity."""
    return pd.DataFrame([{"corruption": c.name, "parameter": c.parameter, **{f"severity {s}": c.levels[s - 1] for s in SEVERITIES}}
                         for c in CORRUPTIONS.values()]).set_index("corruption")


@torch.inference_mode()
def accuracy(trained: Trained, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of a trained model on uint8 images, in batches, one pass per image (no test-time augmentation)."""
    device = next(trained.model.parameters()).device
    hits = 0
    for start in range(0, len(images), batch_size):
        x = trained.preprocess(images[start:start + batch_size]).to(device)
        hits += int((trained.model(x).argmax(1).cpu() == labels[start:start + batch_size]).sum())
    return hits / len(images)


def evaluate(trained: Trained, images: torch.Tensor, labels: torch.Tensor) -> pd.DataFrame:
    """Single-pass accuracy on the clean images and under every corruption and severity, with the drop relative to clean accuracy."""
    clean = accuracy(trained, images, labels)
    rows = [{"corruption": "none", "severity": 0, "accuracy": clean}]
    for name in CORRUPTIONS:
        for severity in SEVERITIES:
            rows.append({"corruption": name, "severity": severity, "accuracy": accuracy(trained, corrupt(images, name, severity), labels)})
    table = pd.DataFrame(rows)
    table["relative drop"] = 1 - table["accuracy"] / clean if clean > 0 else float("nan")
    return table


def subset(images: torch.Tensor, labels: torch.Tensor, count: int | None, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random subset of `count` images (all if None or more than there are), the same for every model."""
    if count is None or count >= len(images):
        return images, labels
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:count]
    return images[pick], labels[pick]


def load_models(runs: dict[str, str], profile: str, load: Callable[[str, str], Trained] = load_trained) -> tuple[dict[str, Trained], list[str]]:
    """The trained models of the runs (title → run name) whose checkpoint is here, and one message per run skipped."""
    device = default_device()
    models, skipped = {}, []
    for title, run in runs.items():
        try:
            models[title] = load(run, profile)
        except DnicError as err:
            skipped.append(f"{title}: skipped, {err.problem}")
            continue
        models[title].model.to(device)
    return models, skipped


def labelled(table: pd.DataFrame, title: str, trained: Trained, images: torch.Tensor) -> pd.DataFrame:
    """A model's evaluate() table with its title, the number of images and the model's number of classes, in COLUMNS."""
    return table.assign(model=title, images=len(images), classes=len(trained.meta["classes"]))[COLUMNS]


def robustness(models: dict[str, Trained], images: torch.Tensor, labels: torch.Tensor) -> pd.DataFrame:
    """Per model, single-pass accuracy on the clean images and under every corruption and severity, with the relative drop."""
    tables = [labelled(evaluate(trained, images, labels), title, trained, images) for title, trained in models.items()]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=COLUMNS)


def _key(run: str, profile: str, images: int, data_sha256: str | None, checkpoint_sha256: str | None, meta: dict | None = None) -> dict:
    """What a model's robustness results depend on: its training run, the images and the corruptions.

    The training run is the record's checkpoint id, taken for a checkpoint here only if the record describes the run that wrote it.
    """
    record = read_record(profile, run) or {}
    run_id = record.get("checkpoint_id") if meta is None or same_run(record, meta) else None
    return {"run": run, "checkpoint_id": run_id, "checkpoint_sha256": checkpoint_sha256, "data_sha256": data_sha256,
            "images": images, "subset_seed": 0, "noise_seed": NOISE_SEED, "levels": {c.name: list(c.levels) for c in CORRUPTIONS.values()}}


def cached_evaluate(run: str, trained: Trained, profile: str, images: torch.Tensor, labels: torch.Tensor, data: dict) -> pd.DataFrame:
    """evaluate(), kept in the record results/<profile>/robustness-<run>.json and reused while its inputs are the same.

    The inputs are the checkpoint, the images and the corruptions: the study costs minutes on a CPU once per checkpoint, then seconds.
    """
    key = _key(run, profile, len(images), data.get("sha256"), file_sha256(checkpoint_dir(profile, run) / "best.pt"), trained.meta)
    cached = read_record(profile, f"robustness-{run}")
    if cached and cached["config"] == key:
        return pd.DataFrame(cached["metrics"]["rows"])
    start = time.perf_counter()
    table = evaluate(trained, images, labels)
    device = str(next(trained.model.parameters()).device)
    write_record(make_record("robustness", f"robustness-{run}", profile, key, {"rows": table.to_dict("records")}, device=device, data=data,
                             seed=0, wall_time_s=time.perf_counter() - start))
    return table


def kept_results(run: str, profile: str, count: int) -> pd.DataFrame | None:
    """The kept robustness results (evaluate()'s table and the images) of a run whose checkpoint is not here, if measured on its current run.

    Checkpoints stay on the machine that trained them, so a study of runs trained in several sessions reads each one's results from
    the session that had its checkpoint: the record's checkpoint id names the training run, the data checksum the test set.
    """
    record, cached = read_record(profile, run), read_record(profile, f"robustness-{run}")
    if not (record and cached and record.get("checkpoint_id")):
        return None
    test_images = record["data"].get("sizes", {}).get("test", count)
    want = _key(run, profile, min(count, test_images), record["data"].get("sha256"), None)
    del want["checkpoint_sha256"]  # the file is not here to hash; its training run is named by the id
    if any(cached["config"].get(name) != value for name, value in want.items()):
        return None
    return pd.DataFrame(cached["metrics"]["rows"]).assign(images=want["images"])


def study(runs: dict[str, str], profile: str, dataset: str, count: int | None, data_dir: str | None = None) -> tuple[pd.DataFrame, list[str], str]:
    """The robustness study of the models whose checkpoint is here, or whose results were kept from it: the results, the skips, a note.

    `profile` is the compared runs'; the images are a seeded subset of the test set of `count` images (None: IMAGES[profile]).
    """
    optional(whole(1))("corruption_images", count)
    count = IMAGES[profile] if count is None else count
    models, skipped = load_models(runs, profile)
    kept = {title: table for title, run in runs.items() if title not in models and (table := kept_results(run, profile, count)) is not None}
    skipped = [line for line in skipped if not any(line.startswith(f"{title}: ") for title in kept)]
    if not models and not kept:
        return robustness({}, torch.empty(0), torch.empty(0)), skipped, (
            f"No checkpoint of profile `{profile}` is here for any of the {len(runs)} models (checkpoints are not in the repository, so a "
            "fresh clone has none), and no results kept from one: the robustness study is skipped. Running the model notebooks first "
            "makes them.")
    classes = len(dataset_info(dataset).classes)
    tables = {title: table.assign(model=title, classes=classes)[COLUMNS] for title, table in kept.items()}
    if models:
        raw = load_raw(dataset, data_dir)
        images, labels = subset(raw.test_x, raw.test_y, count)
        data = {"dataset": dataset, **raw.source}
        tables |= {title: labelled(cached_evaluate(runs[title], trained, profile, images, labels, data), title, trained, images)
                   for title, trained in models.items()}
    results = pd.concat([tables[title] for title in runs if title in tables], ignore_index=True)
    where = (f"{len(models)} evaluated from the checkpoint here" if models else "") + (" and " if models and kept else "") + (
        f"{len(kept)} read from the results kept when the checkpoint was here: {', '.join(kept)}" if kept else "")
    size, test_images = int(results["images"].iloc[0]), dataset_info(dataset).sizes[1]  # the canonical test set
    note = (f"{len(tables)} of {len(runs)} models ({where}; profile `{profile}`), on the same {size:,} test images "
            f"(a seeded random subset of {test_images:,}) under {len(CORRUPTIONS)} corruptions at {len(SEVERITIES)} severities. Each "
            f"model's results are kept in results/{profile}/robustness-<run>.json and reused while its record names the same training "
            "run. Every accuracy here is single pass, one view per image: a recipe's test-time augmentation is not applied, so the clean "
            "accuracy can differ from the leaderboard's, which averages several views for recipes with test-time augmentation. "
            + ranking_note(results))
    return results, skipped, note


def keep_results(profile: str, data_dir: str | None = None) -> list[str]:
    """Measure and keep the robustness results of the profile's compared CIFAR-10 runs whose checkpoint is here; their titles.

    Checkpoints stay on the machine that trained them and the results travel with the records, so the runner calls this after a
    batch: the comparison made in a later session reads the results of runs trained in earlier ones.
    """
    selection = select([r for r in training_records() if r["profile"] == profile], "cifar10", profile)
    runs = {run.title: run.default["name"] for run in selection.runs.values()}
    results = study(runs, profile, "cifar10", None, data_dir)[0] if runs else pd.DataFrame(columns=COLUMNS)
    return list(dict.fromkeys(results["model"]))


def above_chance(accuracy: float, images: int, classes: int) -> bool:
    """Whether an accuracy on `images` images is significantly above chance (one-sided binomial test against 1/classes at ALPHA)."""
    return bool(binomtest(round(accuracy * images), images, 1 / classes, alternative="greater").pvalue < ALPHA)


def clean_rows(results: pd.DataFrame) -> pd.DataFrame:
    """The results on the clean images, one row per model, indexed by model."""
    return results[results["corruption"] == "none"].set_index("model")


def ranked(results: pd.DataFrame) -> pd.Series:
    """Per model, whether its clean accuracy is significantly above chance: only then does its relative drop rank its robustness."""
    return pd.Series({model: above_chance(row["accuracy"], int(row["images"]), int(row["classes"]))
                      for model, row in clean_rows(results).iterrows()}, dtype=bool)


def ranking_note(results: pd.DataFrame) -> str:
    """The rule of the robustness ranking, on how many images, and the models it leaves out with their clean accuracy."""
    above, first, clean = ranked(results), results.iloc[0], clean_rows(results)["accuracy"]
    rule = (f"The drop table ranks robustness by the mean relative drop only among models whose clean single-pass accuracy is significantly "
            f"above chance (one-sided binomial test against 1/{int(first['classes'])}, α = {ALPHA:g}, on the {int(first['images']):,} "
            "images): a model near chance has no accuracy to lose, so its small drop says nothing about robustness.")
    left_out = [f"{model} ({clean[model]:.1%} clean)" for model in above.index[~above]]
    return rule + (f" Not ranked, and marked{UNRANKED} in the table: {', '.join(left_out)}." if left_out else
                   f" All {len(above)} models qualify.")


def drop_table(results: pd.DataFrame) -> pd.DataFrame:
    """Per model: test images, clean accuracy and the mean relative drops, ranked by the overall drop.

    Clean single-pass accuracy (%), the mean relative drop (%) per corruption over its severities and over all 15 conditions;
    ranked by that mean among models above chance, the others after them, marked UNRANKED.
    """
    corrupted, clean = results[results["corruption"] != "none"], clean_rows(results)
    table = corrupted.groupby(["model", "corruption"])["relative drop"].mean().unstack().reindex(columns=list(CORRUPTIONS)) * 100
    table.insert(0, CLEAN, clean["accuracy"] * 100)
    table.insert(0, "test images", clean["images"].astype(int))
    table[MEAN_DROP] = corrupted.groupby("model")["relative drop"].mean() * 100
    above = ranked(results)
    unranked = table.loc[above.index[~above]].sort_values(MEAN_DROP).rename(index=lambda model: model + UNRANKED)
    out = pd.concat([table.loc[above.index[above]].sort_values(MEAN_DROP), unranked]).round(1)
    floats = out.select_dtypes("float").columns
    out[floats] += 0.0  # a tiny negative drop rounds to -0.0; adding 0.0 shows it as 0.0
    return out
