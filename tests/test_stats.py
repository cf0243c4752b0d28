"""The comparison's statistics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dnic_utils import stats


def test_mcnemar_exact_matches_the_binomial_tail_by_hand() -> None:
    # b=1, c=9: two-sided exact p = 2 · P(X ≤ 1), X ~ Bin(10, 1/2) = 2 · (1 + 10) / 1024
    result = stats.mcnemar_counts(1, 9)
    assert result.test == "exact binomial"
    assert result.p_value == pytest.approx(22 / 1024, abs=1e-12) and result.p_value == pytest.approx(0.021484375)
    assert stats.mcnemar_counts(9, 1).p_value == pytest.approx(0.021484375)  # symmetric
    assert stats.mcnemar_counts(0, 0).p_value == 1.0  # no discordant pair: no evidence either way
    assert stats.mcnemar_counts(12, 12).p_value == pytest.approx(1.0)


def test_mcnemar_uses_the_continuity_corrected_chi_square_from_25_discordant_pairs() -> None:
    # b=10, c=30: χ² = (|10 − 30| − 1)² / 40 = 9.025; with one degree of freedom p = erfc(√(χ²/2))
    result = stats.mcnemar_counts(10, 30)
    assert result.test.startswith("chi-square")
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(9.025 / 2)), rel=1e-9)
    assert stats.mcnemar_counts(12, 12).test == "exact binomial"  # 24 discordant pairs: still exact
    assert stats.mcnemar_counts(12, 13).test.startswith("chi-square")  # 25: chi-square


def test_mcnemar_counts_the_discordant_images() -> None:
    a = np.array([1, 1, 0, 0, 1, 1], dtype=bool)
    b = np.array([0, 1, 1, 0, 1, 0], dtype=bool)
    result = stats.mcnemar(a, b)
    assert (result.only_a, result.only_b) == (2, 1)
    with pytest.raises(ValueError, match="same images"):
        stats.mcnemar(a, b[:-1])


def test_holm_adjusts_a_small_vector_as_worked_by_hand() -> None:
    # sorted: 0.005·4 = 0.02; 0.01·3 = 0.03; 0.03·2 = 0.06; 0.04·1 = 0.04 → running max 0.06
    adjusted = stats.holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert list(stats.holm([])) == []


def test_ece_of_four_samples_by_hand() -> None:
    # bins of width 1/15: 0.95 and 0.96 share bin 15 (mean confidence 0.955, accuracy 1/2), 0.62 is in bin 10, 0.30 in bin 5
    # ECE = 2/4 · |0.5 − 0.955| + 1/4 · |1 − 0.62| + 1/4 · |0 − 0.30| = 0.2275 + 0.095 + 0.075
    confidence = np.array([0.95, 0.96, 0.62, 0.30])
    correct = np.array([1, 0, 1, 0], dtype=bool)
    assert stats.expected_calibration_error(confidence, correct) == pytest.approx(0.3975)
    table = stats.reliability(confidence, correct)
    assert len(table["count"]) == 15 and table["count"].sum() == 4
    assert table["count"][14] == 2 and table["accuracy"][14] == 0.5 and table["confidence"][14] == pytest.approx(0.955)
    assert np.isnan(table["accuracy"][0])  # an empty bin has no accuracy
    assert stats.expected_calibration_error(np.array([1.0, 1.0]), np.array([True, True])) == 0.0  # perfectly calibrated


def test_ece_bins_are_closed_on_the_right() -> None:
    table = stats.reliability(np.array([1 / 15, 0.0, 1.0]), np.array([True, True, True]))
    assert table["count"][0] == 2 and table["count"][14] == 1  # 1/15 belongs to the first bin, 0 too


def test_bootstrap_of_two_images_spans_zero_to_one() -> None:
    # resampled means are 0, 1/2 or 1 with probabilities 1/4, 1/2, 1/4: the 2.5th and 97.5th percentiles are 0 and 1
    assert stats.bootstrap_accuracy(np.array([0, 1])) == (0.0, 1.0)
    assert stats.bootstrap_accuracy(np.ones(50)) == (1.0, 1.0)  # every resample is perfect


def test_bootstrap_is_close_to_the_normal_interval_and_seeded() -> None:
    correct = np.zeros(1000, dtype=bool)
    correct[:900] = True  # 90%: the normal interval is 0.9 ± 1.96 · √(0.09/1000) = 0.9 ± 0.0186
    low, high = stats.bootstrap_accuracy(correct)
    assert low == pytest.approx(0.9 - 0.0186, abs=0.004) and high == pytest.approx(0.9 + 0.0186, abs=0.004)
    assert stats.bootstrap_accuracy(correct) == (low, high)  # seeded: the same interval every time


def test_bootstrap_over_seeds_averages_each_image_first() -> None:
    per_seed = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], dtype=bool)  # per image: 1, 1/2, 0, 0
    low, high = stats.bootstrap_accuracy(per_seed)
    assert 0.0 <= low < 0.375 < high <= 0.75  # 0.375: the mean accuracy over both seeds


def test_mean_std_uses_the_sample_standard_deviation() -> None:
    mean, std = stats.mean_std([0.90, 0.92, 0.94])
    assert mean == pytest.approx(0.92) and std == pytest.approx(0.02)
    mean, std = stats.mean_std([0.5])
    assert mean == 0.5 and math.isnan(std)
