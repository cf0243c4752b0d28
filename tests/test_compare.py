"""The comparative analysis on synthetic records: the selection rule, the tables and the significance tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score

from compare_records import IMAGES, LABELS, correct_first, record
from dnic_utils import compare, compare_text, stats
from dnic_utils.data import dataset_info
from dnic_utils.models import REGISTRY, model_spec
from dnic_utils.records import encode_predictions


def write(root: Path, rec: dict) -> None:
    """Write a record under root/<profile>/<name>.json."""
    path = root / rec["profile"] / f"{rec['name']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


# --------------------------------------------------------------------------------------------------------------
# Which runs are compared


def test_the_highest_profile_where_every_architecture_has_a_record_is_chosen() -> None:
    records = [record(a, "quick") for a in REGISTRY] + [record("lenet5", "budget")] + [record(a, "smoke") for a in REGISTRY]
    chosen = compare.select(records, "cifar10", "budget")
    assert chosen.profile == "quick" and list(chosen.runs) == list(REGISTRY) and chosen.missing == []
    assert {r.default["profile"] for r in chosen.runs.values()} == {"quick"}  # never a mix of profiles
    assert "every registered architecture has a record there" in chosen.note()
    assert compare.select(records, "cifar10", "smoke").profile == "smoke"  # the notebook's profile caps the choice


def test_without_full_coverage_the_highest_profile_with_the_most_is_chosen() -> None:
    few = list(REGISTRY)[:3]
    records = [record(a, "quick") for a in few] + [record(a, "budget") for a in few] + [record(few[0], "full")]
    chosen = compare.select(records, "cifar10", "full")
    assert chosen.profile == "budget"  # quick and budget tie with three; the higher wins
    missing = [model_spec(a).title for a in list(REGISTRY)[3:]]
    assert chosen.missing == missing and ", ".join(missing) in chosen.note()
    empty = compare.select(records, "mnist", "full")
    assert empty.profile is None and empty.runs == {} and "nothing to compare" in empty.note()


def test_seed_records_join_their_architecture_and_other_variants_stay_out() -> None:
    records = [record("lenet5"), record("lenet5", seed=2), record("lenet5", seed=1), record("vgg16"), record("vgg16", lr=0.2),
               record("resnet18", seed=1)]  # ResNet18 has no default run: not compared
    assert compare.seed_of(records[1]) == 2 and compare.seed_of(records[4]) is None
    chosen = compare.select(records, "cifar10", "quick")
    assert [r["seed"] for r in chosen.runs["lenet5"].records] == [0, 1, 2]
    assert [r["seed"] for r in chosen.runs["vgg16"].records] == [0]
    assert "resnet18" not in chosen.runs and "2 record(s) of further seeds" in chosen.note()


def test_a_seed_record_trained_otherwise_than_its_default_run_is_left_out_and_named() -> None:
    stale = record("lenet5", seed=1)
    stale["config"]["epochs"] += 1  # as when the profile's epochs changed after this seed ran: its name stays, its recipe does not
    records = [record("lenet5"), stale, record("lenet5", seed=2)]
    chosen = compare.select(records, "cifar10", "quick")
    assert [r["seed"] for r in chosen.runs["lenet5"].records] == [0, 2]
    assert chosen.dropped == [stale["name"]] and stale["name"] in chosen.note() and "1 record(s) of further seeds" in chosen.note()


def test_the_projects_records_win_over_the_checkouts_and_unreadable_ones_are_named(tmp_path: Path) -> None:
    project, checkout = tmp_path / "project", tmp_path / "checkout"
    write(project, record("lenet5", correct=correct_first(100)))
    write(checkout, record("lenet5", correct=correct_first(50)))
    write(checkout, record("vgg16"))
    (checkout / "quick" / "cifar10-vgg19.json").write_text("{")
    with pytest.warns(UserWarning, match="cifar10-vgg19.json"):
        found = compare.training_records([project, checkout])
    by_name = {r["name"]: r for r in found}
    assert set(by_name) == {"cifar10-lenet5", "cifar10-vgg16"} and by_name["cifar10-lenet5"]["metrics"]["test_acc"] == 0.5


# --------------------------------------------------------------------------------------------------------------
# Tables


def test_the_leaderboard_gives_mean_std_and_bootstrap_interval_over_seeds() -> None:
    records = [record("lenet5", correct=correct_first(n), seed=s) for s, n in enumerate((180, 170, 160))] + [record("vgg16", correct=correct_first(100))]
    chosen = compare.select(records, "cifar10", "quick")
    table = compare.summary(chosen, resamples=500)
    mean, std = stats.mean_std([0.9, 0.85, 0.8])
    assert table.loc["LeNet-5", "acc"] == pytest.approx(mean) and table.loc["LeNet-5", "acc_std"] == pytest.approx(std)
    per_seed = np.stack([correct_first(n) for n in (180, 170, 160)])
    assert (table.loc["LeNet-5", "ci_low"], table.loc["LeNet-5", "ci_high"]) == stats.bootstrap_accuracy(per_seed, 500)
    assert list(table.index) == ["LeNet-5", "VGG16"]  # best first
    shown = compare.leaderboard(table)
    assert shown.loc["LeNet-5", "test acc (%)"] == f"{100 * mean:.2f} ± {100 * std:.2f} (3 seeds)"
    assert shown.loc["VGG16", "test acc (%)"] == "50.00"
    assert {"latency @1 (ms)", "latency @16 (ms)", "device", "precision", "MFLOPs", "params"} <= set(shown.columns)


def test_pareto_front_by_hand() -> None:
    cost = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    acc = np.array([0.5, 0.7, 0.6, 0.8, 0.9])  # 3 is dominated by 2; NaN cost is never on the front
    assert list(compare.pareto_front(cost, acc)) == [True, True, False, True, False]
    assert list(compare.pareto_front(np.array([1.0, 1.0]), np.array([0.5, 0.5]))) == [True, True]  # ties dominate neither


def test_per_class_f1_and_calibration_match_their_definitions() -> None:
    chosen = compare.select([record("lenet5", correct=correct_first(150))], "cifar10", "quick")
    f1 = compare.per_class_f1(chosen)
    y_pred = np.where(correct_first(150), LABELS, (LABELS + 1) % 10)
    assert f1.loc["LeNet-5"].to_numpy() == pytest.approx(100 * f1_score(LABELS, y_pred, average=None))
    table, diagrams = compare.calibration(chosen)
    confidence = np.where(correct_first(150), 0.9, 0.6).astype(np.float16).astype(float)
    assert table.loc["LeNet-5", "ECE (%)"] == pytest.approx(round(100 * stats.expected_calibration_error(confidence, correct_first(150)), 2))
    assert diagrams["LeNet-5"]["count"].sum() == IMAGES


def test_shared_confusions_are_those_every_model_makes() -> None:
    chosen = compare.select([record("lenet5", correct=correct_first(100)), record("vgg16", correct=correct_first(150))], "cifar10", "quick")
    shared = compare.shared_confusions(chosen, k=2)
    assert len(shared) == 2 and (shared["least share (%)"] > 0).all()
    classes = list(dataset_info("cifar10").classes)  # a wrong prediction is always the next class
    assert all(classes.index(p) == (classes.index(t) + 1) % 10 for t, p in zip(shared["true class"], shared["predicted"]))
    assert "Every one of the 2 models" in compare_text.confusion_text(chosen, shared)


def test_seed_spread_is_set_beside_the_gaps() -> None:
    records = ([record("lenet5", correct=correct_first(n), seed=s) for s, n in enumerate((180, 160))]
               + [record("vgg16", correct=correct_first(168)), record("resnet18", correct=correct_first(100))])
    table = compare.summary(compare.select(records, "cifar10", "quick"), resamples=200)
    seeds = compare.seed_table(table)
    assert list(seeds.index) == ["LeNet-5", "VGG16", "ResNet18"]
    assert seeds.loc["LeNet-5", "gap to next (pp)"] == pytest.approx(1.0) and seeds.loc["VGG16", "gap to next (pp)"] == pytest.approx(34.0)
    std = round(100 * stats.mean_std([0.9, 0.8])[1], 2)
    assert seeds.loc["LeNet-5", "std across seeds (pp)"] == std
    text = compare_text.seed_text(table)  # each gap against its own two models' spread: VGG16-ResNet18's 34 pp has none measured
    assert text.startswith("1 architecture(s) have 2 seeds; the widest spread is LeNet-5's")
    assert f"a standard deviation of {std:.2f} pp. Of the 1 gap(s) between neighbours in the ranking where at least one of the two ran several seeds, 1 is smaller" in text
    assert "The other 1 gap(s) are between models with one seed each" in text
    assert text.endswith(" One seed only: VGG16, ResNet18, whose further seeds have not run.")
    table["dataset"] = "mnist"  # the rule's time limit alone: ResNet18 and VGG16 on CIFAR-10 are seeded however long they take
    table.loc["ResNet18", ["own_train_s", "train_time_s"]] = 20 * 60.0  # a run over the rule's 15 minutes is named with its time
    assert compare_text.seed_text(table).endswith(" One seed only: ResNet18 (20.0 min), which trained for over 15 minutes (waits for a core aside), so "
                                                  "this report runs no further seeds of them; VGG16, whose further seeds have not run.")
    table.loc["ResNet18", ["own_train_s", "cpu_wait"]] = [16 * 60.0, 0.2]  # a run that shared the CPU: both its times are named
    assert " One seed only: ResNet18 (16.0 min; 20.0 with its waits for a core), which trained for over" in compare_text.seed_text(table)
    table.loc["ResNet18", "own_train_s"] = 10 * 60.0  # its waits aside, under the rule: due for seeds
    assert compare_text.seed_text(table).endswith(" One seed only: VGG16, ResNet18, whose further seeds have not run.")
    table.loc["VGG16", ["dataset", "own_train_s"]] = ["cifar10", 60 * 60.0]  # VGG16 on CIFAR-10 is seeded however long it takes
    assert "VGG16, ResNet18, whose further seeds have not run." in compare_text.seed_text(table)
    table.loc["VGG16", "dataset"] = "mnist"
    assert "VGG16 (60.0 min), which trained for over 15 minutes" in compare_text.seed_text(table)
    table.loc["ResNet18", "own_train_s"] = 16 * 60.0  # two over the limit: the sentence speaks of each
    assert "VGG16 (60.0 min), ResNet18 (16.0 min; 20.0 with its waits for a core), each of which trained for over 15 minutes" in compare_text.seed_text(table)


def test_the_literature_table_labels_every_reported_number() -> None:
    chosen = compare.select([record("mobilenet_v2", correct=correct_first(120))], "cifar10", "quick")
    table = compare.literature_table({"cifar10": compare.summary(chosen, resamples=200)}, {"cifar10": chosen})
    assert len(table) == len(compare.LITERATURE)
    assert table[["source", "their setting", "their data"]].ne("").all().all()
    assert list(table["reported (%)"]) == [f"{100 * r['acc']:.2f}" for r in compare.LITERATURE]
    mobile = table[table["model"] == "MobileNetV2"].iloc[0]
    assert mobile["ours (%)"] == "60.00" and "profile `quick`" in mobile["our setting"] and "JPEG" in mobile["our data"]
    assert mobile["our setting"].endswith("; mean of 1 seed(s), 1 test view(s) per image")
    assert (table[table["model"] == "VGG16"]["ours (%)"] == "—").all()  # no MNIST record: no number of ours


# --------------------------------------------------------------------------------------------------------------
# Significance, the curves and the figures


def test_significance_tests_every_pair_with_holms_correction(trio: compare.Selection) -> None:
    pairs = compare.significance(trio)
    assert len(pairs) == 3
    row = pairs[(pairs["a"] == "LeNet-5") & (pairs["b"] == "VGG16")].iloc[0]
    assert (row["only_a"], row["only_b"], row["test"]) == (70, 0, "chi-square (continuity-corrected)")
    assert row["p"] == pytest.approx(stats.mcnemar_counts(70, 0).p_value)
    assert list(pairs["p_holm"]) == pytest.approx(list(stats.holm(pairs["p"].to_numpy())))
    matrix = compare.pvalue_matrix(pairs, ["LeNet-5", "VGG16", "ResNet18"])
    assert matrix.loc["VGG16", "LeNet-5"] == matrix.loc["LeNet-5", "VGG16"] == row["p_holm"] and np.isnan(matrix.loc["VGG16", "VGG16"])


def test_a_raw_p_below_alpha_is_not_enough_after_holm() -> None:
    # LeNet-5 against VGG16: 6 discordant images all one way, exact p = 2/64 = 0.031 < 0.05; Holm over 3 pairs triples it
    records = [record("lenet5", correct=correct_first(106)), record("vgg16", correct=correct_first(100)), record("resnet18", correct=correct_first(103))]
    pairs = compare.significance(compare.select(records, "cifar10", "quick"))
    row = pairs[(pairs["a"] == "LeNet-5") & (pairs["b"] == "VGG16")].iloc[0]
    assert row["p"] == pytest.approx(2 / 64) and row["p_holm"] >= 0.05
    assert "indistinguishable" in compare_text.verdict(pairs, "LeNet-5", "VGG16")


def test_pairs_on_different_test_images_are_not_tested() -> None:
    other = record("vgg16")
    other["predictions"] = encode_predictions(torch.zeros(10, dtype=torch.uint8), torch.zeros(10, dtype=torch.uint8), torch.ones(10))
    pairs = compare.significance(compare.select([record("lenet5"), other], "cifar10", "quick"))
    assert pairs.empty and "were not tested" in compare_text.verdict(pairs, "LeNet-5", "VGG16")


def test_training_curves_and_seed_accuracies_are_long_frames(trio: compare.Selection) -> None:
    points = compare.training_curves(trio)
    assert set(points["model"]) == {"LeNet-5", "VGG16", "ResNet18"} and len(points) == 24
    assert list(points.columns) == ["model", "images_seen", "train_time_s", "val_acc"]
    accs = compare.seed_accuracies(trio)
    assert isinstance(accs, pd.DataFrame) and list(accs["seed"]) == [0, 0, 0]


def test_every_figure_is_drawn_and_saved_under_its_stable_name(project_dir: Path, trio: compare.Selection) -> None:
    from dnic_utils import compare_plots, corruptions

    table, pairs = compare.summary(trio, resamples=200), compare.significance(trio)
    seeded = pd.DataFrame({"model": ["LeNet-5", "LeNet-5", "VGG16"], "seed": [0, 1, 0], "acc": [0.9, 0.85, 0.6]})
    results = pd.DataFrame([{"model": m, "corruption": c, "severity": s, "accuracy": 0.5, "relative drop": 0.1 * s, "images": 200, "classes": 10}
                            for m in ("LeNet-5", "VGG16") for c in ["none", *corruptions.CORRUPTIONS] for s in ((0,) if c == "none" else (1, 2, 3))])
    figures = {
        "costs": compare_plots.costs(table, "t", "compare-x-costs", "smoke"),
        "curves": compare_plots.curves(compare.training_curves(trio), "t", "compare-x-curves", "smoke"),
        "significance": compare_plots.pvalues(compare.pvalue_matrix(pairs, list(table.index)), "t", "compare-x-significance", "smoke", 0.05),
        "reliability": compare_plots.reliability(compare.calibration(trio)[1], "t", "compare-x-reliability", "smoke"),
        "per-class": compare_plots.per_class(compare.per_class_f1(trio), "t", "compare-x-per-class", "smoke"),
        "seeds": compare_plots.seeds(seeded, "t", "compare-x-seeds", "smoke"),
        "robustness": compare_plots.robustness(corruptions.drop_table(results)[[*corruptions.CORRUPTIONS, corruptions.MEAN_DROP]], "t", "compare-x-robustness", "smoke"),
    }
    for kind, fig in figures.items():
        assert (project_dir / "figures" / "smoke" / f"compare-x-{kind}.png").stat().st_size > 0, kind
        assert all(ax.get_xlabel() for ax in fig.axes if ax.get_visible() and ax.axison and ax.get_label() != "<colorbar>"), kind
    legend = figures["costs"].axes[0].get_legend()
    assert legend is not None and legend.get_texts()[0].get_text().startswith("Pareto front: ")


def test_a_record_of_an_earlier_recipe_is_compared_and_named() -> None:
    current, older = record("lenet5"), record("fastnet")
    older["config"]["lr"], older["config"]["schedule"] = 0.05, "onecycle"  # as FastNet's record read before its recipe changed
    del older["config"]["bias_decay"]  # a field added since, at the default that kept the old behaviour: not a difference by itself
    assert compare.current_recipe(current) and not compare.current_recipe(older)
    del current["config"]["bias_decay"]
    assert compare.current_recipe(current)
    chosen = compare.select([current, older], "cifar10", "quick")
    assert set(chosen.runs) == {"lenet5", "fastnet"} and chosen.note().endswith("(their notebooks re-run in this profile would replace them): FastNet.")
