"""The comparative analysis on synthetic records: the selection rule, the tables, the significance sentences and the claim check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score

from dnic_utils import compare, stats
from dnic_utils.config import RunConfig
from dnic_utils.data import dataset_info
from dnic_utils.metrics import classification_metrics
from dnic_utils.models import REGISTRY, model_spec
from dnic_utils.records import encode_predictions, make_record

IMAGES = 200
LABELS = np.arange(IMAGES) % 10


def record(arch: str, profile: str = "quick", dataset: str = "cifar10", correct: np.ndarray | None = None, seed: int = 0,
           **config: object) -> dict:
    """A training record as experiment.run writes it, with per-image predictions: right where `correct` says, else the next class."""
    correct = np.ones(IMAGES, dtype=bool) if correct is None else correct
    y_pred = np.where(correct, LABELS, (LABELS + 1) % 10)
    confidence = np.where(correct, 0.9, 0.6)
    cfg = RunConfig(arch, dataset, profile, seed=seed, device="cpu", **config)
    index = list(REGISTRY).index(arch) + 1
    classes = tuple(str(c) for c in range(10))
    metrics = {**classification_metrics(LABELS, y_pred, classes), "test_acc": float(correct.mean()), "test_loss": 1.0, "train_loss": 1.0,
               "train_acc": 0.5, "train_time_s": 10.0 * index, "images_per_s": 1000.0 / index, "params": 1000 * index,
               "trainable_params": 1000 * index, "size_mb": 0.004 * index, "flops": 10**6 * index, "latency_ms": {"1": 0.5 * index, "16": 4.0 * index},
               "amp": "fp32", "best_epoch": 1, "epochs_run": 1, "best_val_acc": 0.5}
    del metrics["accuracy"]
    curve = [{"epoch": k / 8, "images_seen": 32 * k, "train_time_s": 1.0 * k, "val_acc": min(1.0, 0.1 * k)} for k in range(1, 9)]
    rec = make_record("train", cfg.run_name, profile, cfg.to_dict(), metrics, device="cpu",
                      data={"dataset": dataset, "title": "CIFAR-10 (JPEG q75 copy)", "sizes": {"train": 256, "val": 128, "test": IMAGES}},
                      seed=seed, wall_time_s=12.0, arch_title=model_spec(arch).title, curve=curve,
                      predictions=encode_predictions(torch.from_numpy(LABELS), torch.from_numpy(y_pred), torch.from_numpy(confidence)))
    return json.loads(json.dumps(rec, default=str))  # as read back from disk: batch keys of latency_ms become strings


def correct_first(n: int) -> np.ndarray:
    """Right on the first n images, wrong on the rest."""
    mask = np.zeros(IMAGES, dtype=bool)
    mask[:n] = True
    return mask


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
    assert "Every one of the 2 models" in compare.confusion_text(chosen, shared)


def test_seed_spread_is_set_beside_the_gaps() -> None:
    records = ([record("lenet5", correct=correct_first(n), seed=s) for s, n in enumerate((180, 160))]
               + [record("vgg16", correct=correct_first(168)), record("resnet18", correct=correct_first(100))])
    table = compare.summary(compare.select(records, "cifar10", "quick"), resamples=200)
    seeds = compare.seed_table(table)
    assert list(seeds.index) == ["LeNet-5", "VGG16", "ResNet18"]
    assert seeds.loc["LeNet-5", "gap to next (pp)"] == pytest.approx(1.0) and seeds.loc["VGG16", "gap to next (pp)"] == pytest.approx(34.0)
    std = round(100 * stats.mean_std([0.9, 0.8])[1], 2)
    assert seeds.loc["LeNet-5", "std across seeds (pp)"] == std
    assert f"a standard deviation of {std:.2f} pp; 1 of the 2 gaps" in compare.seed_text(table)


def test_the_literature_table_labels_every_reported_number() -> None:
    chosen = compare.select([record("mobilenet_v2", correct=correct_first(120))], "cifar10", "quick")
    table = compare.literature_table({"cifar10": compare.summary(chosen, resamples=200)}, {"cifar10": chosen})
    assert len(table) == len(compare.LITERATURE)
    assert table[["source", "their setting", "their data"]].ne("").all().all()
    assert list(table["reported (%)"]) == [f"{100 * r['acc']:.2f}" for r in compare.LITERATURE]
    mobile = table[table["model"] == "MobileNetV2"].iloc[0]
    assert mobile["ours (%)"] == "60.00" and "profile `quick`" in mobile["our setting"] and "JPEG" in mobile["our data"]
    assert (table[table["model"] == "VGG16"]["ours (%)"] == "—").all()  # no MNIST record: no number of ours


# --------------------------------------------------------------------------------------------------------------
# Significance and the claims made from it


@pytest.fixture
def trio() -> compare.Selection:
    """LeNet-5 right on 190 images, VGG16 on 120 (a large gap), ResNet18 on 189 (one image from LeNet-5)."""
    return compare.select([record("lenet5", correct=correct_first(190)), record("vgg16", correct=correct_first(120)),
                           record("resnet18", correct=correct_first(189))], "cifar10", "quick")


def test_significance_tests_every_pair_with_holms_correction(trio: compare.Selection) -> None:
    pairs = compare.significance(trio)
    assert len(pairs) == 3
    row = pairs[(pairs["a"] == "LeNet-5") & (pairs["b"] == "VGG16")].iloc[0]
    assert (row["only_a"], row["only_b"], row["test"]) == (70, 0, "chi-square (continuity-corrected)")
    assert row["p"] == pytest.approx(stats.mcnemar_counts(70, 0).p_value)
    assert list(pairs["p_holm"]) == pytest.approx(list(stats.holm(pairs["p"].to_numpy())))
    matrix = compare.pvalue_matrix(pairs, ["LeNet-5", "VGG16", "ResNet18"])
    assert matrix.loc["VGG16", "LeNet-5"] == matrix.loc["LeNet-5", "VGG16"] == row["p_holm"] and np.isnan(matrix.loc["VGG16", "VGG16"])


def test_beats_only_where_the_corrected_test_says_so(trio: compare.Selection) -> None:
    pairs = compare.significance(trio)
    assert compare.verdict(pairs, "VGG16", "LeNet-5").startswith("**LeNet-5** beats **VGG16** on this test set")
    same = compare.verdict(pairs, "LeNet-5", "ResNet18")
    assert same.startswith("LeNet-5 and ResNet18 are indistinguishable on this test set") and "beats" not in same
    assert "were not tested" in compare.verdict(pairs, "LeNet-5", "GoogLeNet")


def test_a_raw_p_below_alpha_is_not_enough_after_holm() -> None:
    # LeNet-5 against VGG16: 6 discordant images all one way, exact p = 2/64 = 0.031 < 0.05; Holm over 3 pairs triples it
    records = [record("lenet5", correct=correct_first(106)), record("vgg16", correct=correct_first(100)), record("resnet18", correct=correct_first(103))]
    pairs = compare.significance(compare.select(records, "cifar10", "quick"))
    row = pairs[(pairs["a"] == "LeNet-5") & (pairs["b"] == "VGG16")].iloc[0]
    assert row["p"] == pytest.approx(2 / 64) and row["p_holm"] >= 0.05
    assert "indistinguishable" in compare.verdict(pairs, "LeNet-5", "VGG16")


def test_pairs_on_different_test_images_are_not_tested() -> None:
    other = record("vgg16")
    other["predictions"] = encode_predictions(torch.zeros(10, dtype=torch.uint8), torch.zeros(10, dtype=torch.uint8), torch.ones(10))
    pairs = compare.significance(compare.select([record("lenet5"), other], "cifar10", "quick"))
    assert pairs.empty and "were not tested" in compare.verdict(pairs, "LeNet-5", "VGG16")


def claims(text: str) -> list[tuple[str, str]]:
    """Every (winner, loser) a text claims with 'beats', read independently of the code under test."""
    found = re.findall(r"\*\*([^*]+)\*\* beats \*\*([^*]+)\*\*", text)
    assert text.count("beats") == len(found), "a 'beats' in a form the check cannot read"
    return found


def test_every_beats_sentence_has_a_significant_corrected_test_behind_it(trio: compare.Selection) -> None:
    """The acceptance check: generated text claims 'A beats B' only where the Holm-corrected McNemar test of A and B is significant."""
    records = [record(a, correct=correct_first(n)) for a, n in zip(REGISTRY, (195, 190, 120, 189, 60, 150, 150, 149, 30, 100, 110, 180, 175, 170))]
    for selection in (trio, compare.select(records, "cifar10", "quick")):
        table, pairs = compare.summary(selection, resamples=200), compare.significance(selection)
        text = "\n".join(compare.verdicts(pairs)) + "\n" + compare.critical_analysis(selection, table, pairs)
        assert claims(text), "the fixture should produce at least one significant difference"
        for winner, loser in claims(text):
            correct = {run.title: np.asarray(compare._correct(run.default)) for run in selection.runs.values()}
            test = stats.mcnemar(correct[winner], correct[loser])
            assert test.only_a > test.only_b, f"{winner} beats {loser}, but {loser} is right on more discordant images"
            row = pairs[((pairs["a"] == winner) & (pairs["b"] == loser)) | ((pairs["a"] == loser) & (pairs["b"] == winner))].iloc[0]
            assert row["p"] == pytest.approx(test.p_value) and row["p_holm"] < compare.ALPHA, f"{winner} beats {loser} without a significant test"
        not_significant = pairs[~pairs["significant"]]
        for row in not_significant.itertuples():
            assert "indistinguishable" in compare.verdict(pairs, row.a, row.b)
        assert compare.unsupported_claims(text, pairs) == []


def test_the_claim_check_refuses_a_claim_without_a_significant_test(trio: compare.Selection) -> None:
    pairs = compare.significance(trio)
    assert compare.unsupported_claims("**LeNet-5** beats **ResNet18** by a hair.", pairs) == ["**LeNet-5** beats **ResNet18**"]
    assert compare.unsupported_claims("**VGG16** beats **LeNet-5**.", pairs) == ["**VGG16** beats **LeNet-5**"]  # wrong winner
    assert compare.unsupported_claims("**LeNet-5** beats **GoogLeNet**.", pairs) == ["**LeNet-5** beats **GoogLeNet**"]  # never tested
    assert compare.unsupported_claims("LeNet-5 beats VGG16.", pairs) != []  # a claim the check cannot read is refused too
    with pytest.raises(AssertionError, match="without a significant corrected test"):
        compare.checked("**LeNet-5** beats **ResNet18**.", pairs)
    assert compare.checked("**LeNet-5** beats **VGG16**.", pairs) == "**LeNet-5** beats **VGG16**."


def test_the_critical_analysis_is_formatted_from_the_records(trio: compare.Selection) -> None:
    records = [record(a, correct=correct_first(n)) for a, n in (("vgg16", 120), ("vgg19", 125), ("resnet18", 189), ("mobilenet_v2", 150))]
    selection = compare.select(records, "cifar10", "quick")
    table, pairs = compare.summary(selection, resamples=200), compare.significance(selection)
    text = compare.critical_analysis(selection, table, pairs)
    vgg16, vgg19 = table.loc["VGG16"], table.loc["VGG19"]
    assert f"From VGG16 to VGG19, parameters change {vgg19['params'] / vgg16['params']:.1f}×" in text
    mobile, resnet = table.loc["MobileNetV2"], table.loc["ResNet18"]
    assert f"MobileNetV2 needs {mobile['flops'] / resnet['flops']:.0%} of ResNet18's FLOPs" in text
    assert f"takes {mobile['latency_1'] / resnet['latency_1']:.0%} of its single-image latency" in text
    assert "**The seeds' future work.**" in text and "Hyper-parameter optimisation" in text and "Additional datasets" in text
    assert "ranking by test accuracy is led by ResNet18, MobileNetV2, VGG19" in text
    assert compare.critical_analysis(compare.select([], "cifar10", "quick"), table.iloc[:0], pairs.iloc[:0]).startswith("No runs")


def test_cost_text_names_the_fronts_and_the_latency_disagreement() -> None:
    records = [record(a, correct=correct_first(n)) for a, n in (("lenet5", 100), ("vgg16", 150), ("vgg19", 140), ("resnet18", 190))]
    table = compare.summary(compare.select(records, "cifar10", "quick"), resamples=200)
    text = compare.cost_text(table)
    assert "On parameters, the Pareto front (no model both cheaper and more accurate) is: LeNet-5, VGG16, ResNet18." in text
    assert "Spearman rank correlation of 1.00 over 4 models" in text  # the synthetic costs grow together


def test_training_curves_and_seed_accuracies_are_long_frames(trio: compare.Selection) -> None:
    points = compare.training_curves(trio)
    assert set(points["model"]) == {"LeNet-5", "VGG16", "ResNet18"} and len(points) == 24
    assert list(points.columns) == ["model", "images_seen", "train_time_s", "val_acc"]
    accs = compare.seed_accuracies(trio)
    assert isinstance(accs, pd.DataFrame) and list(accs["seed"]) == [0, 0, 0]


def test_ranking_transfer_between_datasets() -> None:
    archs = ["lenet5", "vgg16", "resnet18"]
    records = [record(a, dataset=d, correct=correct_first(n)) for d in ("cifar10", "mnist") for a, n in zip(archs, (100, 150, 190))]
    selections = {d: compare.select(records, d, "quick") for d in ("cifar10", "mnist")}
    summaries = {d: compare.summary(s, resamples=200) for d, s in selections.items()}
    assert "Kendall's tau 1.00 over 3 architectures" in compare.transfer_text(summaries, selections)


def test_neighbours_and_the_significance_summary(trio: compare.Selection) -> None:
    table, pairs = compare.summary(trio, resamples=200), compare.significance(trio)
    sentences = compare.neighbour_verdicts(table, pairs)
    assert len(sentences) == 2 and sentences[0].startswith("LeNet-5 and ResNet18 are indistinguishable")
    assert sentences[1].startswith("**ResNet18** beats **VGG16**")
    text = compare.significance_text(trio, pairs)
    assert "3 pairs tested on 200 test images" in text and "2 differ at a family-wise 0.05" in text and "the other 1 are" in text


def test_the_recipe_text_says_whether_the_runs_share_one_recipe() -> None:
    same = compare.select([record("lenet5"), record("vgg16")], "cifar10", "quick")
    assert compare.recipe_text(same).startswith("every architecture here ran one recipe (")
    assert "optimizer sgd" in compare.recipe_text(same)
    vgg = record("vgg16")
    vgg["config"]["label_smoothing"] = 0.0  # as a registry recipe of its own would set it
    differ = compare.select([record("lenet5"), vgg], "cifar10", "quick")
    assert "their recipes differ per architecture in label smoothing" in compare.recipe_text(differ)


def test_every_figure_is_drawn_and_saved_under_its_stable_name(project_dir: Path, trio: compare.Selection) -> None:
    from dnic_utils import compare_plots, corruptions

    table, pairs = compare.summary(trio, resamples=200), compare.significance(trio)
    seeded = pd.DataFrame({"model": ["LeNet-5", "LeNet-5", "VGG16"], "seed": [0, 1, 0], "acc": [0.9, 0.85, 0.6]})
    results = pd.DataFrame([{"model": m, "corruption": c, "severity": s, "accuracy": 0.5, "relative drop": 0.1 * s}
                            for m in ("LeNet-5", "VGG16") for c in ["none", *corruptions.CORRUPTIONS] for s in ((0,) if c == "none" else (1, 2, 3))])
    figures = {
        "costs": compare_plots.costs(table, "t", "compare-x-costs", "smoke"),
        "curves": compare_plots.curves(compare.training_curves(trio), "t", "compare-x-curves", "smoke"),
        "significance": compare_plots.pvalues(compare.pvalue_matrix(pairs, list(table.index)), "t", "compare-x-significance", "smoke", 0.05),
        "reliability": compare_plots.reliability(compare.calibration(trio)[1], "t", "compare-x-reliability", "smoke"),
        "per-class": compare_plots.per_class(compare.per_class_f1(trio), "t", "compare-x-per-class", "smoke"),
        "seeds": compare_plots.seeds(seeded, "t", "compare-x-seeds", "smoke"),
        "robustness": compare_plots.robustness(corruptions.drop_table(results).drop(columns="clean accuracy (%)"), "t", "compare-x-robustness", "smoke"),
    }
    for kind, fig in figures.items():
        assert (project_dir / "figures" / "smoke" / f"compare-x-{kind}.png").stat().st_size > 0, kind
        assert all(ax.get_xlabel() for ax in fig.axes if ax.get_visible() and ax.axison and ax.get_label() != "<colorbar>"), kind
    legend = figures["costs"].axes[0].get_legend()
    assert legend is not None and legend.get_texts()[0].get_text().startswith("Pareto front: ")
