"""One run end to end on the shipped fixture data: record, trained model, crash recovery and the architecture-specific discussion."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dnic_utils import experiment, records, report, train
from dnic_utils.checkpoint import load_trained
from dnic_utils.config import PROFILES, make_config
from dnic_utils.errors import DnicError
from dnic_utils.models import weightedsum


@pytest.fixture
def weighted_sum_run(project_dir: Path, fixture_data: Path) -> experiment.Experiment:
    """WeightedSumNet trained for one smoke epoch on the fixture MNIST."""
    return experiment.run(make_config("weightedsumnet", "mnist", profile="smoke"), data_dir=str(fixture_data))


@pytest.fixture
def lenet_run(project_dir: Path, fixture_data: Path) -> experiment.Experiment:
    """LeNet-5 trained for one smoke epoch on the fixture MNIST."""
    return experiment.run(make_config("lenet5", "mnist", profile="smoke"), data_dir=str(fixture_data))


def test_a_run_writes_its_record_under_the_project(weighted_sum_run: experiment.Experiment, project_dir: Path) -> None:
    assert weighted_sum_run.record_path == project_dir / "results" / "smoke" / "mnist-weightedsumnet.json"
    assert weighted_sum_run.record_path.is_file()
    assert weighted_sum_run.metrics["tta"] == "off"
    assert set(weighted_sum_run.metrics["latency_ms"]) == set(PROFILES["smoke"].latency_batches)
    m = weighted_sum_run.metrics  # how long the run waited for a core, training and timing latency (Linux reports it)
    assert 0 <= m["train_cpu_wait"] <= 1 and 0 <= m["latency_cpu_wait"] <= 1


def test_a_run_without_latency_measures_none_and_its_summary_shows_none(project_dir: Path, fixture_data: Path) -> None:
    plain = experiment.run(make_config("lenet5", "mnist", profile="smoke"), data_dir=str(fixture_data), latency=False)
    assert plain.metrics["latency_ms"] == {} and records.read_record("smoke", plain.name)["metrics"]["latency_ms"] == {}
    assert not any(label.startswith("latency") for label in plain.summary_table().index)


def test_learned_branch_weights_are_measured_on_validation_images(weighted_sum_run: experiment.Experiment) -> None:
    x = weighted_sum_run.splits.loader("val", 512, "cpu").images(512)  # as the run describes them: spread over the split
    weights = weightedsum.branch_weight_table(weighted_sum_run.model, x)
    assert weights.attrs["images"] == min(512, len(weighted_sum_run.splits.val_y))
    means = weights["mean weight"].unstack()
    assert means.shape == (3, 3)  # three blocks of three branches
    assert means.sum(axis=1).tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-3)  # softmax weights (bf16 on CPU) sum to 1
    text = report.discussion(weighted_sum_run)
    assert "learned branch weights" in text and f"{means.iloc[0, 0]:.2f}" in text
    assert weighted_sum_run.record["model_notes"] == weighted_sum_run.model_notes


def test_nets_without_branch_weights_say_nothing_about_them(lenet_run: experiment.Experiment) -> None:
    assert lenet_run.model_notes is None
    assert "branch weights" not in report.discussion(lenet_run)


def test_the_discussion_compares_with_the_peers_passed_in(lenet_run: experiment.Experiment) -> None:
    assert "For comparison" not in report.discussion(lenet_run)  # nothing is read from disk
    peer = {**lenet_run.record, "arch_title": "VGG16", "config": {**lenet_run.record["config"], "arch": "vgg16"}}
    assert report.peers([peer, lenet_run.record], lenet_run.cfg) == [peer]
    assert "VGG16" in report.discussion(lenet_run, peers=[peer])
    assert lenet_run.cfg.tta == "multiview"  # LeNet-5's recipe: digits are not mirrored, so three views
    assert "averaging 3 views of each (multiview test-time augmentation)" in report.discussion(lenet_run)
    plain = {**peer, "config": {**peer["config"], "tta": "off"}}
    assert f"VGG16 {100 * peer['metrics']['test_acc']:.2f}% (3 test views)" in report.discussion(lenet_run, peers=[peer])
    assert f"VGG16 {100 * peer['metrics']['test_acc']:.2f}%." in report.discussion(lenet_run, peers=[plain])


def test_the_record_keeps_every_test_prediction_compactly(lenet_run: experiment.Experiment) -> None:
    preds = records.test_predictions(lenet_run.record)
    n = len(lenet_run.y_true)
    assert {k: len(v) for k, v in preds.items()} == {"y_true": n, "y_pred": n, "confidence": n}
    assert np.array_equal(preds["y_true"], lenet_run.y_true.numpy()) and np.array_equal(preds["y_pred"], lenet_run.y_pred.numpy())
    assert (preds["y_true"] == preds["y_pred"]).mean() == pytest.approx(lenet_run.metrics["test_acc"])
    assert ((1 / 10 - 1e-3) <= preds["confidence"].astype(float)).all() and (preds["confidence"] <= 1).all()
    assert len(lenet_run.record["predictions"]["y_pred"]) <= 4 * n // 3 + 4  # base64 of one byte per image


def test_the_trained_model_can_be_used_without_the_record(lenet_run: experiment.Experiment) -> None:
    trained = load_trained("mnist-lenet5", profile="smoke")
    meta = trained.meta
    assert (meta["arch"], meta["in_channels"], meta["image_size"], meta["classes"]) == ("lenet5", 1, 28, [str(i) for i in range(10)])
    assert meta["run_name"] == "mnist-lenet5" and meta["data_sha256"] == lenet_run.splits.source["sha256"] and "git_commit" in meta
    assert not trained.model.training
    probs = trained.predict(lenet_run.splits.test_x)
    plain = train.evaluate(lenet_run.model, lenet_run.splits.loader("test", 64, "cpu"))  # the run's model, without its recipe's test-time views
    assert torch.equal(probs.argmax(1), plain["y_pred"])
    assert load_trained("mnist-lenet5").meta["profile"] == "smoke"  # no profile: the highest that has it
    rgb = trained.preprocess(lenet_run.splits.test_x[:2].expand(-1, 3, -1, -1))  # an RGB image for a grey model: converted
    assert rgb.shape == (2, 1, 28, 28)


def test_load_trained_names_what_is_missing_or_wrong(project_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(DnicError, match="mnist-vgg16"):
        load_trained("mnist-vgg16")
    bad = tmp_path / "notes.pt"
    torch.save({"weights": torch.zeros(2)}, bad)
    with pytest.raises(DnicError, match="not a trained-model checkpoint"):
        load_trained(bad)
    with pytest.raises(DnicError, match="No trained model"):
        load_trained("no/such/folder/best.pt")


def test_a_crash_after_training_but_before_the_record_does_not_train_again(project_dir: Path, fixture_data: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_config("lenet5", "mnist", profile="smoke")
    with monkeypatch.context() as m:
        m.setattr(experiment, "write_record", lambda record: (_ for _ in ()).throw(KeyboardInterrupt("killed before the record")))
        with pytest.raises(KeyboardInterrupt):
            experiment.run(cfg, data_dir=str(fixture_data))
    epochs: list[str] = []
    real = train._train_epoch
    monkeypatch.setattr(train, "_train_epoch", lambda *args: (epochs.append(args[4]), real(*args))[1])
    finished = experiment.run(cfg, data_dir=str(fixture_data))
    assert epochs == [] and finished.record_path.is_file()  # the finished training was reused: only test and record
    again = experiment.run(cfg, data_dir=str(fixture_data))  # a rerun of a reported run trains afresh
    assert epochs == ["epoch 1/1"] and again.record["checkpoint_id"] != finished.record["checkpoint_id"]


def test_the_training_wait_weights_epochs_by_their_time() -> None:
    rows = [{"train_time_s": 30.0, "cpu_wait": 0.0}, {"train_time_s": 10.0, "cpu_wait": 0.8}]
    assert experiment.training_cpu_wait(rows) == pytest.approx(0.2)
    assert experiment.training_cpu_wait([*rows, {"train_time_s": 5.0}]) is None  # an epoch from before it was measured
    assert experiment.training_cpu_wait([]) is None
