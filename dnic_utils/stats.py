"""The statistics of the comparison: McNemar's test, Holm's correction, bootstrap intervals, calibration error, seed spread."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

EXACT_BELOW = 25  # McNemar: the exact binomial test when there are fewer discordant pairs than this, else chi-square
ECE_BINS = 15


@dataclass(frozen=True)
class McNemar:
    """McNemar's test of two classifiers on the same images: the discordant counts, the test used and its two-sided p-value."""

    only_a: int  # images A gets right and B wrong
    only_b: int  # images B gets right and A wrong
    test: str  # 'exact binomial' or 'chi-square (continuity-corrected)'
    p_value: float


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    """McNemar's test on per-image correctness (booleans, same images in the same order): exact below 25 discordant pairs."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"McNemar needs the same images for both classifiers, got {a.shape} and {b.shape}")
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    return mcnemar_counts(only_a, only_b)


def mcnemar_counts(only_a: int, only_b: int) -> McNemar:
    """McNemar's test from the two discordant counts."""
    n = only_a + only_b
    if n == 0:
        return McNemar(only_a, only_b, "exact binomial", 1.0)
    if n < EXACT_BELOW:
        return McNemar(only_a, only_b, "exact binomial", float(stats.binomtest(min(only_a, only_b), n, 0.5).pvalue))
    statistic = (abs(only_a - only_b) - 1) ** 2 / n
    return McNemar(only_a, only_b, "chi-square (continuity-corrected)", float(stats.chi2.sf(statistic, df=1)))


ALPHA = 0.05  # the family-wise error rate of a set of tests read together (Holm)


def holm(p_values: list[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the order given: reject where the adjusted value is below alpha."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    m = len(p)
    stepped = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(stepped) if m else stepped
    return adjusted


def bootstrap_accuracy(correct: np.ndarray, resamples: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """A percentile bootstrap interval of accuracy, resampling images; correct is (images,) or (seeds, images), averaged over seeds."""
    per_image = np.asarray(correct, dtype=float)
    per_image = per_image.mean(axis=0) if per_image.ndim == 2 else per_image
    if per_image.min() == per_image.max():  # every resample gives the same accuracy
        return float(per_image[0]), float(per_image[0])
    result = stats.bootstrap((per_image,), np.mean, n_resamples=resamples, confidence_level=level, method="percentile",
                             rng=np.random.default_rng(seed))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> dict[str, np.ndarray]:
    """Per equal-width confidence bin ((k/bins, (k+1)/bins], the first closed): edges, image counts, mean confidence, accuracy (NaN if empty)."""
    conf = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct, dtype=float)
    index = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(index, weights=conf, minlength=bins) / counts
        accuracy = np.bincount(index, weights=hit, minlength=bins) / counts
    return {"edges": np.linspace(0, 1, bins + 1), "count": counts, "confidence": mean_conf, "accuracy": accuracy}


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the image-weighted mean over confidence bins of |accuracy − mean confidence| (15 bins by default)."""
    table = reliability(confidence, correct, bins)
    filled = table["count"] > 0
    weights = table["count"][filled] / table["count"].sum()
    return float(np.sum(weights * np.abs(table["accuracy"][filled] - table["confidence"][filled])))


def mean_std(values: list[float] | np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for a single value)."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else float("nan")
