"""The comparison's prose on synthetic records: the significance sentences, the claim check and the texts formatted from the tables."""

from __future__ import annotations

import re

import numpy as np
import pytest

from compare_records import correct_first, record
from dnic_utils import compare, compare_text, stats
from dnic_utils.models import REGISTRY


# --------------------------------------------------------------------------------------------------------------
# Significance sentences and the claims made in them


def test_beats_only_where_the_corrected_test_says_so(trio: compare.Selection) -> None:
    pairs = compare.significance(trio)
    assert compare_text.verdict(pairs, "VGG16", "LeNet-5").startswith("**LeNet-5** beats **VGG16** on this test set")
    same = compare_text.verdict(pairs, "LeNet-5", "ResNet18")
    assert same.startswith("LeNet-5 and ResNet18 are indistinguishable on this test set") and "beats" not in same
    assert compare_text.verdict(pairs, "ResNet18", "LeNet-5").startswith("ResNet18 and LeNet-5 are indistinguishable")  # in the order asked for
    assert "were not tested" in compare_text.verdict(pairs, "LeNet-5", "GoogLeNet")


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
        text = "\n".join(compare_text.verdict(pairs, row.a, row.b) for row in pairs.itertuples()) + "\n" + compare_text.critical_analysis(selection, table, pairs)
        assert claims(text), "the fixture should produce at least one significant difference"
        for winner, loser in claims(text):
            correct = {run.title: np.asarray(compare._correct(run.default)) for run in selection.runs.values()}
            test = stats.mcnemar(correct[winner], correct[loser])
            assert test.only_a > test.only_b, f"{winner} beats {loser}, but {loser} is right on more discordant images"
            row = pairs[((pairs["a"] == winner) & (pairs["b"] == loser)) | ((pairs["a"] == loser) & (pairs["b"] == winner))].iloc[0]
            assert row["p"] == pytest.approx(test.p_value) and row["p_holm"] < compare.ALPHA, f"{winner} beats {loser} without a significant test"
        not_significant = pairs[~pairs["significant"]]
        for row in not_significant.itertuples():
            assert "indistinguishable" in compare_text.verdict(pairs, row.a, row.b)
        assert compare_text.unsupported_claims(text, pairs) == []


def test_the_claim_check_refuses_a_claim_without_a_significant_test(trio: compare.Selection) -> None:
    pairs = compare.significance(trio)
    assert compare_text.unsupported_claims("**LeNet-5** beats **ResNet18** by a hair.", pairs) == ["**LeNet-5** beats **ResNet18**"]
    assert compare_text.unsupported_claims("**VGG16** beats **LeNet-5**.", pairs) == ["**VGG16** beats **LeNet-5**"]  # wrong winner
    assert compare_text.unsupported_claims("**LeNet-5** beats **GoogLeNet**.", pairs) == ["**LeNet-5** beats **GoogLeNet**"]  # never tested
    assert compare_text.unsupported_claims("LeNet-5 beats VGG16.", pairs) != []  # a claim the check cannot read is refused too
    with pytest.raises(AssertionError, match="without a significant corrected test"):
        compare_text.checked("**LeNet-5** beats **ResNet18**.", pairs)
    assert compare_text.checked("**LeNet-5** beats **VGG16**.", pairs) == "**LeNet-5** beats **VGG16**."


def test_the_critical_analysis_is_formatted_from_the_records(trio: compare.Selection) -> None:
    records = [record(a, correct=correct_first(n)) for a, n in (("vgg16", 120), ("vgg19", 125), ("resnet18", 189), ("mobilenet_v2", 150))]
    selection = compare.select(records, "cifar10", "quick")
    table, pairs = compare.summary(selection, resamples=200), compare.significance(selection)
    text = compare_text.critical_analysis(selection, table, pairs)
    vgg16, vgg19 = table.loc["VGG16"], table.loc["VGG19"]
    assert f"From VGG16 to VGG19, parameters change {vgg19['params'] / vgg16['params']:.1f}×" in text
    mobile, resnet = table.loc["MobileNetV2"], table.loc["ResNet18"]
    assert f"MobileNetV2 needs {mobile['flops'] / resnet['flops']:.0%} of ResNet18's FLOPs" in text
    assert f"takes {mobile['latency_1'] / resnet['latency_1']:.0%} of its single-image latency" in text
    assert f"it trains at {mobile['images_per_s'] / resnet['images_per_s']:.0%} of ResNet18's training images/s. " in text
    table.loc["MobileNetV2", "cpu_wait"] = 0.21  # a throughput measured on a shared CPU is flagged where it is compared
    assert "of ResNet18's training images/s (MobileNetV2 waited for a core 21% of its training). " in compare_text.critical_analysis(selection, table, pairs)
    assert "**The seed projects' future work.**" in text and "Hyper-parameter optimisation" in text and "Additional datasets" in text
    assert "the most accurate model on this test set is ResNet18; the corrected pairwise tests separate every other model from it" in text
    assert "among the 4 models, ResNet18 ranks 1st (in that group), VGG19 ranks 3rd." in text
    assert compare_text.critical_analysis(compare.select([], "cifar10", "quick"), table.iloc[:0], pairs.iloc[:0]).startswith("No runs")


def test_a_step_between_runs_of_different_recipes_says_so() -> None:
    records = [record(a, correct=correct_first(n)) for a, n in (("vgg16", 120), ("vgg19", 125), ("resnet18", 189))]
    records[1]["config"]["optimizer"] = "adamw"  # as VGG19's registry recipe may set it
    selection = compare.select(records, "cifar10", "quick")
    text = compare_text.critical_analysis(selection, compare.summary(selection, resamples=200), compare.significance(selection))
    step = text[text.index("From VGG16 to VGG19"):text.index("**Residual connections**")]
    assert "Their recipes differ too (optimizer sgd against adamw" in step
    assert "differ too" not in text[text.index("**Residual connections**"):]  # VGG16 and ResNet18 share one recipe


def test_a_ranking_names_the_models_no_test_separates_from_the_best_and_its_ties() -> None:
    records = [record(a, correct=correct_first(n)) for a, n in (("lenet5", 190), ("resnet18", 189), ("vgg16", 120), ("vgg19", 120))]
    selection = compare.select(records, "cifar10", "quick")
    table, pairs = compare.summary(selection, resamples=200), compare.significance(selection)
    assert compare_text.top_group(table, pairs) == ["LeNet-5", "ResNet18"]  # 1 discordant image: indistinguishable
    text = compare_text.critical_analysis(selection, table, pairs)
    assert "the most accurate model on this test set is LeNet-5; the corrected pairwise tests cannot tell ResNet18 from it" in text
    assert "ResNet18 ranks 2nd (in that group), VGG19 ranks joint 3rd." in text  # tied with VGG16 at 60%
    assert "led by" not in text


def test_a_model_that_beats_the_leader_on_seed_0_stays_in_the_top_group() -> None:
    # LeNet-5 leads on its mean over two seeds (75%), but on seed 0 (the tested run) ResNet18 is right on 40 more images
    records = [record("lenet5", correct=correct_first(100)), record("lenet5", correct=correct_first(200), seed=1),
               record("resnet18", correct=correct_first(140)), record("vgg16", correct=correct_first(20))]
    selection = compare.select(records, "cifar10", "quick")
    table, pairs = compare.summary(selection, resamples=200), compare.significance(selection)
    assert list(table.index[:2]) == ["LeNet-5", "ResNet18"]
    assert compare_text.verdict(pairs, "LeNet-5", "ResNet18").startswith("**ResNet18** beats **LeNet-5**")
    assert compare_text.top_group(table, pairs) == ["LeNet-5", "ResNet18"]  # not 'separated' from the leader by a test it won
    text = compare_text.significance_text(selection, pairs)
    assert "Each test compares the models' seed-0 runs (their notebooks' own); LeNet-5 also ran further seeds" in text
    assert "test-time augmentation included (LeNet-5 6 views per image)" in text  # its recipe's multiview on CIFAR-10; the others 1


def test_training_times_are_compared_per_image_seen_when_the_budgets_differ() -> None:
    records = [record(a, correct=correct_first(n)) for a, n in (("vgg16", 120), ("vgg19", 125), ("resnet18", 150), ("resnet50", 150))]
    records[3]["data"]["sizes"]["train"] = 64  # a heavy model on a quarter of the training images, as the quick profile's tiers do
    table = compare.summary(compare.select(records, "cifar10", "quick"), resamples=200)
    assert compare.leaderboard(table).loc[["ResNet18", "ResNet50"], "train images"].tolist() == ["256", "64"]
    text = compare_text.critical_analysis(compare.select(records, "cifar10", "quick"), table, compare.significance(compare.select(records, "cifar10", "quick")))
    per_image = (table.loc["ResNet50", "train_time_s"] / 64) / (table.loc["ResNet18", "train_time_s"] / 256)
    assert f"From ResNet18 to ResNet50, parameters change {table.loc['ResNet50', 'params'] / table.loc['ResNet18', 'params']:.1f}×" in text
    assert f"training time per image seen {per_image:.1f}× (their budgets differ: 1 epoch(s) on 256 images against 1 on 64)" in text
    assert f"and training time {table.loc['VGG19', 'train_time_s'] / table.loc['VGG16', 'train_time_s']:.1f}×." in text  # equal budgets
    table.loc["VGG19", "cpu_wait"] = 0.24  # a run that shared the CPU: its time ratio says so
    text = compare_text.critical_analysis(compare.select(records, "cifar10", "quick"), table, compare.significance(compare.select(records, "cifar10", "quick")))
    assert f"training time {table.loc['VGG19', 'train_time_s'] / table.loc['VGG16', 'train_time_s']:.1f}× (VGG19 waited for a core 24% of its training)." in text


def test_the_flops_latency_conclusion_follows_the_measurements() -> None:
    records = [record(a, correct=correct_first(n)) for a, n in (("lenet5", 100), ("vgg16", 150), ("vgg19", 140), ("resnet18", 190))]
    table = compare.summary(compare.select(records, "cifar10", "quick"), resamples=200)
    agree = compare_text.flops_latency_text(table)
    assert "FLOPs order the measured latencies closely" in agree and "mispredict" not in agree
    records[0]["metrics"]["latency_ms"]["1"] = 100.0  # the cheapest in FLOPs becomes the slowest
    table = compare.summary(compare.select(records, "cifar10", "quick"), resamples=200)
    text = compare_text.flops_latency_text(table)
    assert "the largest disagreement (3 ranks) is LeNet-5, 1st cheapest in FLOPs but 4th in latency" in text
    assert "FLOPs alone mispredict latency" in text and "on CPU" in text


def test_test_time_augmented_accuracies_pay_for_their_views_on_the_cost_fronts() -> None:
    records = [record("lenet5", correct=correct_first(190)), record("vgg16", correct=correct_first(180))]
    table = compare.summary(compare.select(records, "cifar10", "quick"), resamples=200)
    lenet = table.loc["LeNet-5"]
    assert (lenet["tta"], lenet["views"]) == ("multiview", 6)  # its recipe's; CIFAR-10 images are mirrored too
    assert lenet["tested_flops"] == 6 * lenet["flops"] and lenet["tested_latency"] == 6 * lenet["latency_1"]
    assert table.loc["VGG16", "views"] == 1 and table.loc["VGG16", "tested_flops"] == table.loc["VGG16", "flops"]
    assert compare.leaderboard(table).loc[["LeNet-5", "VGG16"], "test views"].tolist() == ["6 (multiview)", "1"]
    assert "LeNet-5 6 (multiview)" in compare_text.cost_text(table)


def test_cost_text_names_the_fronts_and_the_latency_disagreement() -> None:
    records = [record(a, correct=correct_first(n)) for a, n in (("lenet5", 100), ("vgg16", 150), ("vgg19", 140), ("resnet18", 190))]
    table = compare.summary(compare.select(records, "cifar10", "quick"), resamples=200)
    text = compare_text.cost_text(table)
    assert "On parameters, the Pareto front (no model both cheaper and more accurate) is: LeNet-5, VGG16, ResNet18." in text
    assert "Spearman rank correlation of 1.00 over 4 models" in text  # the synthetic costs grow together
    assert "shared the CPU" not in text  # no record measured its wait
    records[1]["metrics"]["train_cpu_wait"], records[2]["metrics"]["train_cpu_wait"] = 0.6, 0.02
    table = compare.summary(compare.select(records, "cifar10", "quick"), resamples=200)
    assert "waited for a core during part of their training (VGG16 60% of the run's runnable time)" in compare_text.cost_text(table)
    assert compare.leaderboard(table).loc[["VGG16", "VGG19", "LeNet-5"], "CPU wait (%)"].tolist() == ["60", "2", "—"]


def test_a_shared_default_run_is_timed_by_a_seed_that_waited_less() -> None:
    seeds = [record("vgg16", correct=correct_first(150), seed=s) for s in range(3)]
    for rec, (wait, seconds) in zip(seeds, ((0.3, 90.0), (0.02, 60.0), (0.01, 70.0))):
        rec["metrics"]["train_cpu_wait"], rec["metrics"]["train_time_s"], rec["metrics"]["images_per_s"] = wait, seconds, 256 / seconds
    seeds[2]["device"] = {**seeds[2]["device"], "name": "another CPU"}  # the least wait, but not the default's device: not chosen
    records = [*seeds, record("lenet5", correct=correct_first(100))]
    table = compare.summary(compare.select(records, "cifar10", "quick"), resamples=200)
    assert table.loc["VGG16", ["train_time_s", "cpu_wait", "timed_seed"]].tolist() == [60.0, 0.02, 1]
    assert table.loc["VGG16", "images_per_s"] == pytest.approx(256 / 60.0)
    assert table.loc["LeNet-5", "timed_seed"] == 0  # its default run was not measured as shared: kept
    shown = compare.leaderboard(table)
    assert shown.loc[["VGG16", "LeNet-5"], "train time (s)"].tolist() == ["60.0 (seed 1)", "10.0"]
    text = compare_text.cost_text(table)
    assert "the default seed's run shared the CPU (waited for a core 10% of its runnable time or more) and that seed's waited less: VGG16 seed 1." in text
    assert "shared the CPU with other work" not in text  # the time shown is no longer a shared run's
    seeds[0]["metrics"]["train_cpu_wait"] = 0.05  # under the line: the default's own time stays, though a seed waited less
    table = compare.summary(compare.select(records, "cifar10", "quick"), resamples=200)
    assert table.loc["VGG16", ["train_time_s", "timed_seed"]].tolist() == [90.0, 0]
    assert "another seed's run" not in compare_text.cost_text(table)


def test_ranking_transfer_between_datasets() -> None:
    archs = ["lenet5", "vgg16", "resnet18"]
    records = [record(a, dataset=d, correct=correct_first(n)) for d in ("cifar10", "mnist") for a, n in zip(archs, (100, 150, 190))]
    selections = {d: compare.select(records, d, "quick") for d in ("cifar10", "mnist")}
    summaries = {d: compare.summary(s, resamples=200) for d, s in selections.items()}
    assert "Kendall's tau 1.00 over 3 architectures" in compare_text.transfer_text(summaries, selections)


def test_neighbours_and_the_significance_summary(trio: compare.Selection) -> None:
    table, pairs = compare.summary(trio, resamples=200), compare.significance(trio)
    sentences = compare_text.neighbour_verdicts(table, pairs)
    assert len(sentences) == 2 and sentences[0].startswith("LeNet-5 and ResNet18 are indistinguishable")
    assert sentences[1].startswith("**ResNet18** beats **VGG16**")
    text = compare_text.significance_text(trio, pairs)
    assert "3 pairs tested on 200 test images" in text and "2 differ at a family-wise 0.05" in text and "the other 1 are" in text
    mixed = pairs.assign(images=[200, 200, 150])  # one pair on a test set of another size (records of an earlier test size)
    assert "3 pairs tested on test sets of 150 images (1 pairs), 200 images (2 pairs)" in compare_text.significance_text(trio, mixed)


def test_the_recipe_text_says_whether_the_runs_share_one_recipe() -> None:
    same = compare.select([record("resnet18"), record("vgg16")], "cifar10", "quick")  # neither has a registry recipe of its own
    assert compare_text.recipe_text(same).startswith("every architecture here ran one recipe (")
    assert "optimizer sgd" in compare_text.recipe_text(same)
    assert "freeze" not in compare_text.recipe_text(same) and "copied lr" not in compare_text.recipe_text(same)  # transfer options at rest
    vgg = record("vgg16")
    vgg["config"]["label_smoothing"] = 0.0  # as a registry recipe of its own would set it
    differ = compare.select([record("resnet18"), vgg], "cifar10", "quick")
    assert "their recipes differ per architecture in label smoothing" in compare_text.recipe_text(differ)
    assert vgg["config"]["augment"] is True and "augment on" in compare_text.recipe_text(differ)  # a switch reads on or off, not True
    two = compare.select([record("resnet18"), record("fastnet")], "cifar10", "quick")  # FastNet's recipe has a learning rate of its own
    rates = sorted({(run.default["config"]["lr"], run.default["config"]["batch_size"]) for run in two.runs.values()}, key=repr)
    assert len(rates) == 2 and f"their peak learning rates {rates[0][0]:g} at batch {rates[0][1]}, {rates[1][0]:g} at batch" in compare_text.recipe_text(two)


def study(arch: str, dataset: str = "cifar10", profile: str = "quick", best_trial: int = 3) -> dict:
    """A hyper-parameter study's record as notebook 45 writes it (the fields the comparison reads)."""
    return {"kind": "study", "name": f"hparams-{dataset}-{arch}", "profile": profile,
            "config": {"arch": arch, "dataset": dataset, "sizes": {"epochs": 2, "train_size": 2000, "trials": 8, "val_size": 1000}},
            "metrics": {"best_trial": best_trial, "best_val_acc": 0.625, "default_val_acc": 0.5875, "trials": 8, "pruned": 3}}


def test_the_future_work_cites_the_searches_of_the_compared_profile_and_dataset(trio: compare.Selection) -> None:
    table, pairs = compare.summary(trio, resamples=200), compare.significance(trio)
    text = compare_text.critical_analysis(trio, table, pairs, studies=[study("fastnet"), study("minigooglenet", best_trial=0)])
    assert ("Notebook 45 searched FastNet (8 trials, 3 stopped early by the median rule, each 2 epochs on 2,000 training images, scored on "
            "1,000 validation images): its best setting scored 62.50% on validation against the default recipe's 58.75%") in text
    assert "searched MiniGoogLeNet" in text and "no searched setting scored above the default recipe, which was kept" in text
    other_profile = compare_text.critical_analysis(trio, table, pairs, studies=[study("fastnet", profile="budget")])
    assert "No hyper-parameter search (notebook 45) has a record in profile `quick`" in other_profile
    other_dataset = compare_text.search_text(trio, [study("fastnet", dataset="mnist")])
    assert other_dataset == "Notebook 45's searches in profile `quick` ran on MNIST only."
