"""Notebook 40's study: its arms in every profile, and the verdicts its text draws from tables of records."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from dnic_utils import transfer_study as ts
from dnic_utils.config import PROFILES


def arm_keys(arms: list[ts.Arm]) -> set[tuple]:
    """What an arm is, apart from its seed and sizes."""
    return {(a.part, tuple((k, v) for k, v in a.labels.items() if k not in ("seed", "size", "fraction", "images", "labels per class"))) for a in arms}


def all_arms(profile: str) -> list[ts.Arm]:
    """Every arm of the study in a profile."""
    return ts.part_a(profile) + ts.part_b(profile) + ts.part_c(profile)


def test_every_profile_runs_the_same_arms_and_only_sizes_and_seeds_differ() -> None:
    assert set(ts.SIZES) == set(PROFILES)
    keys = {p: arm_keys(all_arms(p)) for p in PROFILES}
    assert all(k == keys["smoke"] for k in keys.values())
    assert all(len(ts.SIZES[p].seeds) >= 2 for p in ("budget", "full"))  # Yosinski's treatments with 2 or more seeds where it counts


def test_every_arm_is_a_valid_run_and_transfers_name_their_sources() -> None:
    arms = all_arms("smoke")
    configs = [a.config("smoke") for a in arms]
    names = {c.run_name for c in configs}
    for arm, cfg in zip(arms, configs):
        if cfg.source not in (None, "imagenet"):
            assert cfg.source in names  # the study trains the source first
            assert [c.run_name for c in configs].index(cfg.source) < configs.index(cfg)
    b = [(a, c) for a, c in zip(arms, configs) if a.part == "B" and a.labels["treatment"] in ts.YOSINSKI]
    depth = ts.depth(ts.FAST)
    assert {a.labels["n"] for a, _ in b} == set(range(1, depth + 1))
    for arm, cfg in b:
        frozen, half = ts.YOSINSKI[arm.labels["treatment"]][1], ts.YOSINSKI[arm.labels["treatment"]][0]
        assert cfg.cut == arm.labels["n"] and cfg.freeze == (cfg.cut if frozen else 0) and cfg.classes.endswith(":B")
        assert f"{arm.labels['split']}:{half}" == next(c.classes for c in configs if c.run_name == cfg.source)
        assert cfg.seed != next(c.seed for c in configs if c.run_name == cfg.source)  # new layers from another draw


def test_the_study_runs_each_configuration_once_without_measuring_latency(monkeypatch: pytest.MonkeyPatch, project_dir: Path) -> None:
    """In an empty project (no record this commit made could be reused), each configuration runs once."""
    calls = []

    def fake_run(cfg, data_dir=None, resume=True, latency=True):  # noqa: ANN001, ANN202 - stands in for experiment.run
        calls.append((cfg.run_name, latency))
        record = {"name": cfg.run_name, "metrics": {"test_acc": 0.5, "best_val_acc": 0.5, "train_time_s": 1.0, "images_per_s": 1.0},
                  "data": {"sizes": {"test": 10, "train": 10}}}
        return type("Finished", (), {"record": record})()

    monkeypatch.setattr(ts, "run", fake_run)
    arms = ts.part_c("smoke")
    table = ts.run_arms(arms, "smoke")
    assert len(table) == len(arms) and len(calls) == len({a.config("smoke").run_name for a in arms})
    assert not any(latency for _, latency in calls)


@pytest.mark.parametrize(("commit", "made_by", "same_config", "data_sha", "reused"), [
    ("abc", "abc", True, "d1", True),  # this code, this configuration, this data: a stopped study goes on where it stopped
    ("abc", "old", True, "d1", False),  # other code: trained afresh
    ("abc-dirty", "abc-dirty", True, "d1", False),  # uncommitted changes: no telling what made it
    ("abc", "abc", False, "d1", False),  # another configuration under the same name
    ("abc", "abc", True, "d2", False),  # another copy of the data (its checksum differs)
])
def test_a_stopped_study_reuses_only_the_arms_this_code_made(monkeypatch: pytest.MonkeyPatch, commit: str, made_by: str, same_config: bool,
                                                             data_sha: str, reused: bool) -> None:
    [arm] = ts.part_c("smoke")[:1]
    cfg = arm.config("smoke")
    kept = {"name": cfg.run_name, "git_commit": made_by, "config": cfg.to_dict() if same_config else {**cfg.to_dict(), "lr": 9.0},
            "metrics": {"test_acc": 0.7, "best_val_acc": 0.7, "train_time_s": 1.0, "images_per_s": 1.0},
            "data": {"sizes": {"test": 10, "train": 10}, "sha256": data_sha}}
    calls = []

    def fake_run(cfg, data_dir=None, resume=True, latency=True):  # noqa: ANN001, ANN202 - stands in for experiment.run
        calls.append(cfg.run_name)
        return type("Finished", (), {"record": {**kept, "metrics": {**kept["metrics"], "test_acc": 0.5}}})()

    monkeypatch.setattr(ts, "git_commit", lambda: commit)
    monkeypatch.setattr(ts, "load_raw", lambda name, root=None: type("Raw", (), {"source": {"sha256": "d1"}})())  # the data here
    monkeypatch.setattr(ts, "read_record", lambda profile, name: kept if name == cfg.run_name else None)
    monkeypatch.setattr(ts, "run", fake_run)
    table = ts.run_arms([arm], "smoke")
    assert (calls == []) is reused and table["test_acc"].tolist() == [0.7 if reused else 0.5]
    assert ts.provenance_table(table.assign(source=None, source_sha256=None))["reused"].tolist() == [reused]  # the reader sees which


def rows_a(frozen: float, tuned: float, sizes: dict[int, float], low: float, one: float, n: int = 2000) -> pd.DataFrame:
    """A Part A table with the given test accuracies."""
    rows = [{"arm": "treatment", "treatment": t, "test_acc": acc} for t, acc in ((ts.FROZEN, frozen), (ts.ALL, tuned), (ts.SCRATCH, 0.4))]
    rows += [{"arm": "input size", "size": px, "test_acc": acc} for px, acc in sizes.items()]
    rows += [{"arm": "schedule", "schedule": s, "test_acc": acc} for s, acc in (("one-cycle", one), ("constant, low", low))]
    return pd.DataFrame(rows).assign(test_images=n)


def test_part_a_verdicts_follow_the_numbers_and_two_standard_errors() -> None:
    text = ts.part_a_claims(rows_a(0.55, 0.80, {32: 0.50, 64: 0.55, 128: 0.70}, 0.70, 0.80))
    assert "**Frozen is far worse than trained holds**" in text and "80.0% against 55.0%" in text and "+25.0 points" in text
    assert "**Upsampling helps holds**" in text and "70.0% at 128 px" in text
    assert "**A low constant learning rate helps does not hold**" in text and "-10.0 points" in text
    close = ts.part_a_claims(rows_a(0.55, 0.56, {32: 0.55, 128: 0.56}, 0.56, 0.55, n=100))
    assert close.count("is not resolved") == 3


def test_part_b_findings_read_yosinskis_pattern() -> None:
    rows = []
    for split, drop in (("random", 0.02), ("vehicles", 0.15)):
        for seed in (0, 1):
            rows.append({"split": split, "seed": seed, "treatment": "baseB", "n": 0, "test_acc": 0.80})
            for n in range(1, 5):
                rows += [{"split": split, "seed": seed, "treatment": "BnB", "n": n, "test_acc": 0.80 - (0.1 if n in (2, 3) else 0)},
                         {"split": split, "seed": seed, "treatment": "BnB+", "n": n, "test_acc": 0.80},
                         {"split": split, "seed": seed, "treatment": "AnB", "n": n, "test_acc": 0.80 - drop * (n - 1) / 3},
                         {"split": split, "seed": seed, "treatment": "AnB+", "n": n, "test_acc": 0.82}]
    text = ts.part_b_findings(pd.DataFrame(rows).assign(test_images=5000))
    assert text.count("**Frozen BnB dips at middle layers holds**") == 2 and text.count("**Fine-tuned AnB+ beats baseB holds**") == 2
    assert "**The dissimilar split hurts far more holds**" in text and "-15.0 points" in text
    assert "(n = 2) BnB scored 70.0%, -10.0 points from baseB" in text
    assert "AnB's accuracy against baseB changed by -15.0 points on the vehicles/animals split and by -2.0 points on the random" in text
    table = ts.part_b_table(pd.DataFrame(rows).assign(test_images=5000))
    assert table.loc[("vehicles", 4), "AnB"] == pytest.approx(65.0) and table.loc[("random", 0), "baseB"] == pytest.approx(80.0)


def test_a_mean_over_seeds_keeps_the_test_sets_error_and_adds_the_seeds_spread() -> None:
    rows = [{"split": "random", "treatment": "baseB", "n": 0, "seed": k, "test_acc": acc, "test_images": 1000} for k, acc in enumerate((0.6, 0.6))]
    [same] = ts.part_b_means(pd.DataFrame(rows))["se"]
    assert same == pytest.approx(ts.standard_error(0.6, 1000))  # one test set: two seeds do not halve its binomial error
    rows[1]["test_acc"] = 0.64
    [spread] = ts.part_b_means(pd.DataFrame(rows))["se"]
    assert spread == pytest.approx(math.sqrt(ts.standard_error(0.62, 1000) ** 2 + 0.0008 / 2))  # sample variance 0.0008 over 2 seeds


def test_verdicts_are_holm_corrected_over_the_claims_read_together() -> None:
    alone = ts.Claim("A helps", "A hurts", 0.05, 0.0228, "numbers.")  # z = 2.19, p = 0.028
    assert ts.verdicts([alone]) == ["- **A helps holds**: numbers."]
    hurts = ts.Claim("B helps", "B hurts", -0.2, 0.02, "more numbers.")
    nothing = [ts.Claim(f"C{k} helps", "no", 0.0, 0.02, "none.") for k in range(2)]
    lines = ts.verdicts([alone, hurts, *nothing])  # Holm multiplies the smallest p by 4, 0.028 by 3: A is no longer resolved
    assert lines[0] == "- **A helps is not resolved** at this size (Holm-corrected p = 0.08, not below α = 0.05): numbers."
    assert lines[1] == "- **B helps does not hold**: B hurts: more numbers." and lines[2].startswith("- **C0 helps is not resolved**")


def test_a_three_point_gain_over_two_seeds_on_1200_images_is_not_resolved() -> None:
    """The committed notebook 40 once called +3.1 points 'holds' by dividing the test set's error by the seeds."""
    rows = []
    for seed in (0, 1):
        rows.append({"split": "vehicles", "seed": seed, "treatment": "baseB", "n": 0, "test_acc": 0.50})
        for n in (1, 2, 3):
            rows += [{"split": "vehicles", "seed": seed, "treatment": t, "n": n, "test_acc": acc}
                     for t, acc in (("BnB", 0.50), ("BnB+", 0.50), ("AnB", 0.50), ("AnB+", 0.531))]
    table = pd.DataFrame(rows).assign(test_images=1200)
    table = pd.concat([table, table.assign(split="random")], ignore_index=True)
    assert ts.part_b_findings(table).count("**Fine-tuned AnB+ beats baseB is not resolved**") == 2


def test_the_timing_line_sums_the_parts() -> None:
    assert ts.timing_text({"A": 60, "B": 120}, "quick").startswith(
        "In profile `quick` this execution of the study took 3.0 min: part A 1.0 min, part B 2.0 min (training, evaluation and records).")


def test_part_c_says_when_the_scratch_runs_stayed_near_chance() -> None:
    rows = [{"part": "C", "dataset": d, "labels per class": k, "treatment": t, "test_acc": acc}
            for d, scratch in (("mnist", (0.20, 0.95)), ("fashion_mnist", (0.68, 0.83)))
            for k, s in zip((10, 1000), scratch) for t, acc in ((ts.SCRATCH, s), ("frozen", 0.6), ("fine-tuned", 0.9))]
    text = ts.part_c_summary(pd.DataFrame(rows))
    assert "Fine-tuned minus scratch: +70.0 points and -5.0 points" in text
    assert "stayed within 15 points of chance (10.0%) on MNIST at some budgets (20.0% with 10 labels per class)" in text
    assert "on Fashion-MNIST" not in text  # 68% is far from chance
