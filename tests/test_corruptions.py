"""Corruptions on tiny uint8 batches, the evaluation under them, and the skip path for missing checkpoints."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from dnic_utils import corruptions
from dnic_utils.checkpoint import Trained, load_trained, save_trained
from dnic_utils.data import load_raw
from dnic_utils.errors import DnicError
from dnic_utils.models import build_model
from dnic_utils.records import make_record, read_record, write_record
from dnic_utils.settings import checkpoint_dir


@pytest.fixture
def images() -> torch.Tensor:
    """Eight 3×32×32 uint8 images, mid-grey with texture so that no corruption saturates them at once."""
    return torch.randint(64, 192, (8, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", list(corruptions.CORRUPTIONS))
def test_each_corruption_keeps_shape_and_dtype_and_grows_with_severity(images: torch.Tensor, name: str) -> None:
    changes = []
    for severity in corruptions.SEVERITIES:
        out = corruptions.corrupt(images, name, severity)
        assert out.shape == images.shape and out.dtype == torch.uint8
        changes.append((out.float() - images.float()).abs().mean().item())
    assert 0 < changes[0] < changes[1] < changes[2], changes


def test_corruptions_work_on_grey_images(images: torch.Tensor) -> None:
    grey = images[:, :1]
    for name in corruptions.CORRUPTIONS:
        assert corruptions.corrupt(grey, name, 2).shape == grey.shape


def test_noise_is_the_same_every_time_and_leaves_the_global_generator_alone(images: torch.Tensor) -> None:
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = corruptions.corrupt(images, "gaussian noise", 3)
    assert torch.equal(first, corruptions.corrupt(images, "gaussian noise", 3))
    assert torch.equal(torch.rand(1), expected_next)


def test_bad_arguments_raise_a_dnic_error(images: torch.Tensor) -> None:
    with pytest.raises(DnicError, match="Unknown corruption 'fog'"):
        corruptions.corrupt(images, "fog", 1)
    with pytest.raises(DnicError, match="Severity"):
        corruptions.corrupt(images, "blur", 4)
    with pytest.raises(DnicError, match="uint8"):
        corruptions.corrupt(images.float(), "blur", 1)


def test_the_severity_table_lists_three_levels_per_corruption() -> None:
    table = corruptions.severity_table()
    assert list(table.index) == list(corruptions.CORRUPTIONS)
    assert list(table.columns) == ["parameter", "severity 1", "severity 2", "severity 3"]


def tiny_trained() -> Trained:
    """An untrained LeNet-5 for 3×32×32 images, wrapped as a self-describing trained model."""
    torch.manual_seed(0)
    meta = {"arch": "lenet5", "in_channels": 3, "image_size": 32, "mean": [0.5] * 3, "std": [0.25] * 3, "classes": [str(i) for i in range(10)]}
    return Trained(build_model("lenet5", 10, 3, 32).eval(), meta)


def test_evaluate_reports_every_condition_with_the_relative_drop(images: torch.Tensor) -> None:
    trained = tiny_trained()
    labels = trained.predict(images).argmax(1)  # the model's own clean predictions: clean accuracy is 1
    table = corruptions.evaluate(trained, images, labels)
    assert len(table) == 1 + len(corruptions.CORRUPTIONS) * len(corruptions.SEVERITIES)
    clean = table[table["corruption"] == "none"].iloc[0]
    assert clean["accuracy"] == 1.0 and clean["relative drop"] == 0.0
    assert ((table["relative drop"] - (1 - table["accuracy"])).abs() < 1e-12).all()


def test_robustness_skips_missing_checkpoints_with_a_message(images: torch.Tensor, project_dir) -> None:
    trained = tiny_trained()
    labels = trained.predict(images).argmax(1)

    def load(run: str, profile: str) -> Trained:
        return trained if run == "cifar10-lenet5" else load_trained(run, profile)  # the real loader: no checkpoint here

    models, skipped = corruptions.load_models({"LeNet-5": "cifar10-lenet5", "VGG16": "cifar10-vgg16"}, "smoke", load)
    assert list(models) == ["LeNet-5"]
    assert len(skipped) == 1 and skipped[0].startswith("VGG16: skipped, No trained model of run 'cifar10-vgg16'")
    results = corruptions.robustness(models, images, labels)
    assert set(results["images"]) == {8} and set(results["classes"]) == {10}
    table = corruptions.drop_table(results)
    assert list(table.index) == ["LeNet-5"] and table.loc["LeNet-5", corruptions.CLEAN] == 100.0  # 8 of 8: above chance
    assert list(table.columns) == ["test images", corruptions.CLEAN, *corruptions.CORRUPTIONS, corruptions.MEAN_DROP]
    assert table.loc["LeNet-5", "test images"] == 8


def results_of(clean: dict[str, float], drop: dict[str, float], images: int = 200) -> pd.DataFrame:
    """Study results of 10-class models on `images` images: each model's clean accuracy and one relative drop under every corruption."""
    rows = []
    for model, acc in clean.items():
        rows.append({"model": model, "images": images, "classes": 10, "corruption": "none", "severity": 0, "accuracy": acc, "relative drop": 0.0})
        rows += [{"model": model, "images": images, "classes": 10, "corruption": c, "severity": s, "accuracy": acc * (1 - drop[model]),
                  "relative drop": drop[model]} for c in corruptions.CORRUPTIONS for s in corruptions.SEVERITIES]
    return pd.DataFrame(rows, columns=corruptions.COLUMNS)


def test_above_chance_is_a_one_sided_binomial_test_on_the_images_used() -> None:
    assert not corruptions.above_chance(0.062, 200, 10) and not corruptions.above_chance(0.10, 200, 10)  # at or below chance
    assert not corruptions.above_chance(0.135, 200, 10) and corruptions.above_chance(0.14, 200, 10)  # 27 of 200: p 0.067; 28: p 0.043
    assert not corruptions.above_chance(0.15, 40, 10) and corruptions.above_chance(0.15, 2000, 10)  # the same accuracy, fewer or more images


def test_a_model_not_above_chance_is_marked_and_ranked_after_the_others() -> None:
    """A model at 6.2% on 10 classes loses nothing under corruption: it must not rank as the most robust."""
    results = results_of({"ResNet18": 0.80, "FastNet": 0.062, "VGG16": 0.70}, {"ResNet18": 0.30, "FastNet": 0.0, "VGG16": 0.20})
    table = corruptions.drop_table(results)
    assert list(table.index) == ["VGG16", "ResNet18", f"FastNet{corruptions.UNRANKED}"]
    assert list(table[corruptions.MEAN_DROP]) == [20.0, 30.0, 0.0] and list(table[corruptions.CLEAN]) == [70.0, 80.0, 6.2]
    assert (table["test images"] == 200).all() and table["test images"].dtype.kind == "i"


def test_a_drop_that_rounds_to_zero_is_shown_as_zero_not_minus_zero() -> None:
    table = corruptions.drop_table(results_of({"ResNet18": 0.80}, {"ResNet18": -0.0004}))  # a gain of 0.04% under every corruption
    assert str(table.loc["ResNet18", corruptions.MEAN_DROP]) == "0.0" and table.loc["ResNet18", corruptions.CLEAN] == 80.0


def test_the_ranking_note_gives_the_rule_the_images_and_the_models_left_out() -> None:
    note = corruptions.ranking_note(results_of({"ResNet18": 0.80, "FastNet": 0.062}, {"ResNet18": 0.30, "FastNet": 0.0}))
    assert "significantly above chance (one-sided binomial test against 1/10, α = 0.05, on the 200 images)" in note
    assert note.endswith(f"marked{corruptions.UNRANKED} in the table: FastNet (6.2% clean).")
    assert corruptions.ranking_note(results_of({"ResNet18": 0.80}, {"ResNet18": 0.30})).endswith("All 1 models qualify.")


def test_the_study_of_a_fresh_clone_says_so_and_skips(project_dir) -> None:
    """No checkpoint at all: no data is loaded, nothing fails, every model is named as skipped."""
    results, skipped, note = corruptions.study({"VGG16": "cifar10-vgg16", "ResNet18": "cifar10-resnet18"}, "smoke", "cifar10", 8,
                                               data_dir="/nonexistent")
    assert results.empty and len(skipped) == 2
    assert "No checkpoint of profile `smoke` is here for any of the 2 models" in note and "skipped" in note


def test_subset_is_seeded_and_never_larger_than_the_data(images: torch.Tensor) -> None:
    labels = torch.arange(len(images))
    x, y = corruptions.subset(images, labels, 3)
    assert len(x) == 3 and torch.equal(corruptions.subset(images, labels, 3)[1], y)
    assert torch.equal(x, images[y])
    assert len(corruptions.subset(images, labels, 100)[0]) == len(images)
    assert len(corruptions.subset(images, labels, None)[0]) == len(images)


def test_the_study_evaluates_a_saved_checkpoint_on_a_subset_of_the_test_set(project_dir, fixture_data) -> None:
    trained = tiny_trained()
    save_trained(checkpoint_dir("smoke", "cifar10-lenet5") / "best.pt", trained.model.state_dict(), trained.meta)
    results, skipped, note = corruptions.study({"LeNet-5": "cifar10-lenet5", "VGG16": "cifar10-vgg16"}, "smoke", "cifar10", 8, str(fixture_data))
    assert set(results["model"]) == {"LeNet-5"} and len(results) == 16 and len(skipped) == 1
    assert note.startswith("1 of 2 models") and "the same 8 test images" in note and "Every accuracy here is single pass" in note
    assert note.endswith(corruptions.ranking_note(results))


def test_the_study_defaults_to_the_image_count_of_the_profile_it_is_given(project_dir, fixture_data) -> None:
    trained = tiny_trained()
    save_trained(checkpoint_dir("smoke", "cifar10-lenet5") / "best.pt", trained.model.state_dict(), trained.meta)
    results, _, note = corruptions.study({"LeNet-5": "cifar10-lenet5"}, "smoke", "cifar10", None, str(fixture_data))
    assert set(results["images"]) == {corruptions.IMAGES["smoke"]} and f"the same {corruptions.IMAGES['smoke']} test images" in note


def test_the_study_reuses_its_results_until_the_checkpoint_changes(project_dir, fixture_data, monkeypatch) -> None:
    trained = tiny_trained()
    path = checkpoint_dir("smoke", "cifar10-lenet5") / "best.pt"
    save_trained(path, trained.model.state_dict(), trained.meta)
    runs = {"LeNet-5": "cifar10-lenet5"}
    first, _, _ = corruptions.study(runs, "smoke", "cifar10", 8, str(fixture_data))
    calls = []
    real = corruptions.evaluate
    monkeypatch.setattr(corruptions, "evaluate", lambda *args: calls.append(1) or real(*args))
    again, _, _ = corruptions.study(runs, "smoke", "cifar10", 8, str(fixture_data))
    assert calls == [] and again.equals(first)  # read back from results/smoke/robustness-cifar10-lenet5.json
    corruptions.study(runs, "smoke", "cifar10", 6, str(fixture_data))
    assert calls == [1]  # other images: measured again
    with torch.no_grad():
        next(trained.model.parameters()).add_(1.0)
    save_trained(path, trained.model.state_dict(), trained.meta)
    corruptions.study(runs, "smoke", "cifar10", 6, str(fixture_data))
    assert calls == [1, 1]  # another checkpoint: measured again


def test_a_run_whose_checkpoint_is_gone_is_read_from_the_results_kept_for_its_training_run(project_dir, fixture_data) -> None:
    """Checkpoints stay on the machine that trained them: the kept results stand in while the record names the same training run."""
    trained = tiny_trained()
    path = checkpoint_dir("smoke", "cifar10-lenet5") / "best.pt"
    runs = {"LeNet-5": "cifar10-lenet5"}
    data = {"sha256": load_raw("cifar10", str(fixture_data)).source["sha256"]}  # the test set the study reads
    record = make_record("run", "cifar10-lenet5", "smoke", {"lr": 0.1}, {"best_epoch": 2, "best_val_acc": 0.5}, device="cpu", data=data,
                         seed=0, wall_time_s=1.0, checkpoint_id="run-one")
    write_record(record)
    save_trained(path, trained.model.state_dict(), {**trained.meta, "config": {"lr": 0.1}, "epoch": 1, "val_acc": 0.5})
    corruptions.study(runs, "smoke", "cifar10", 8, str(fixture_data))  # a checkpoint the record does not describe: not its run
    assert read_record("smoke", "robustness-cifar10-lenet5")["config"]["checkpoint_id"] is None
    save_trained(path, trained.model.state_dict(), {**trained.meta, "config": {"lr": 0.1}, "epoch": 2, "val_acc": 0.5})
    first, _, _ = corruptions.study(runs, "smoke", "cifar10", 8, str(fixture_data))
    path.unlink()
    again, skipped, note = corruptions.study(runs, "smoke", "cifar10", 8, data_dir="/nonexistent")  # no data is loaded either
    assert again.equals(first) and skipped == []
    assert note.startswith("1 of 1 models (1 read from the results kept when the checkpoint was here: LeNet-5;")
    assert corruptions.study(runs, "smoke", "cifar10", 6, data_dir="/nonexistent")[0].empty  # other images: nothing kept
    write_record({**record, "checkpoint_id": "run-two"})  # retrained elsewhere: the kept results are another run's
    results, skipped, note = corruptions.study(runs, "smoke", "cifar10", 8, data_dir="/nonexistent")
    assert results.empty and len(skipped) == 1 and "no results kept from one" in note


def test_keep_results_measures_the_profiles_cifar10_runs_whose_checkpoint_is_here(project_dir, fixture_data) -> None:
    from compare_records import record  # imported here: the other tests need no synthetic records

    trained = tiny_trained()
    save_trained(checkpoint_dir("smoke", "cifar10-lenet5") / "best.pt", trained.model.state_dict(), trained.meta)
    for arch in ("lenet5", "vgg16"):  # VGG16's checkpoint is not here: nothing to measure
        write_record(record(arch, profile="smoke"))
    assert corruptions.keep_results("smoke", str(fixture_data)) == ["LeNet-5"]
    kept = read_record("smoke", "robustness-cifar10-lenet5")
    assert kept["config"]["images"] == corruptions.IMAGES["smoke"] and len(kept["metrics"]["rows"]) == 16
    assert corruptions.keep_results("quick", str(fixture_data)) == []  # another profile's runs only
