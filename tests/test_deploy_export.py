"""ONNX export: parity with PyTorch on a run's whole test set, the model card, refusals, and the README's table of exported models."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT
from deploy_models import install, untrained_card
from dnic_utils import deployment, export, onnx_model, runner
from dnic_utils.checkpoint import load_trained, save_trained
from dnic_utils.config import make_config
from dnic_utils.data import load_splits
from dnic_utils.experiment import run
from dnic_utils.models import build_model
from dnic_utils.readme import models_table
from dnic_utils.settings import checkpoint_dir


@pytest.fixture
def trained_run(project_dir: Path, fixture_data: Path) -> dict:
    """One smoke epoch of LeNet-5 on the MNIST fixture: a checkpoint and its record in the scratch project (seconds)."""
    return run(make_config("lenet5", "mnist", profile="smoke"), data_dir=str(fixture_data)).record


def test_export_matches_pytorch_on_the_whole_test_set_and_writes_the_card(trained_run: dict, project_dir: Path, fixture_data: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    assert export.main(["mnist-lenet5", "--data-dir", str(fixture_data)]) == 0
    out = capsys.readouterr().out
    folder = project_dir / "results" / "smoke" / "models"
    card = json.loads((folder / "mnist-lenet5.json").read_text())
    onnx = (folder / "mnist-lenet5.onnx").read_bytes()
    test_images = trained_run["data"]["sizes"]["test"]
    p = card["parity"]
    assert p["images"] == test_images == 100  # the whole test set of the fixture
    assert p["same_argmax"] == test_images and p["max_abs_diff"] <= p["tolerance"] == export.TOLERANCE
    assert f"parity on {test_images:,} test images: the same top class on {test_images:,}" in out
    assert card["sha256"] == hashlib.sha256(onnx).hexdigest() and card["onnx_file"] == "mnist-lenet5.onnx"
    assert str(Path(export.__file__).parent).encode() not in onnx and b"stack_trace" not in onnx  # no machine paths shipped
    assert card["input"] == {"name": "images", "dtype": "uint8", "shape": ["batch", 1, 28, 28], "colour": "grey",
                             "values": "0-255, not normalised: the graph normalises"}
    assert card["normalisation"]["mean"] == list(trained_run["data"]["mean"]) and card["normalisation"]["std"] == list(trained_run["data"]["std"])
    assert card["classes"] == [str(i) for i in range(10)] and card["source"]["test_acc"] == trained_run["metrics"]["test_acc"]
    assert card["source"]["val_acc"] == trained_run["metrics"]["best_val_acc"]  # what a deployment chooses by
    assert card["test_acc"] == p["onnx_test_acc"]  # the exported graph's own accuracy, one pass per image: its record's may average views
    assert card["source"]["tta"] == trained_run["config"]["tta"] == "multiview" and "test-time augmentation multiview" in out
    assert card["source"]["record"] == "results/smoke/mnist-lenet5.json" and card["source"]["git_commit"] == trained_run["git_commit"]
    assert card["source"]["created"] == trained_run["created"] and card["source"]["device"].startswith("CPU (")

    # found by name, and it predicts what PyTorch predicts, at any batch size
    model = onnx_model.load_model("mnist-lenet5")
    trained = load_trained("mnist-lenet5")
    cfg = trained.meta["config"]
    test_x = load_splits("mnist", cfg["train_size"], cfg["val_size"], cfg["test_size"], str(fixture_data)).test_x
    with torch.inference_mode():
        expected = trained.predict(test_x).numpy()
    probs = model.probabilities(test_x.numpy())
    assert (probs.argmax(1) == expected.argmax(1)).all() and np.abs(probs - expected).max() < 1e-4
    assert model.logits(test_x[:1].numpy()).shape == (1, 10) and model.logits(test_x[:7].numpy()).shape == (7, 10)


def test_a_run_on_half_the_classes_grey_made_rgb_and_resized_exports_with_its_own_test_images(
        project_dir: Path, fixture_data: Path) -> None:
    """The parity test set is the run's: its five classes, RGB 32×32 made from grey, then resized to the run's input size."""
    cfg = make_config("lenet5", "mnist", profile="smoke", classes="random:A", grey_as_rgb=True, image_size=36)
    record = run(cfg, data_dir=str(fixture_data)).record
    assert export.main([cfg.run_name, "--data-dir", str(fixture_data)]) == 0
    card = json.loads((project_dir / "results" / "smoke" / "models" / f"{cfg.run_name}.json").read_text())
    p = card["parity"]
    assert card["input"]["shape"] == ["batch", 3, 36, 36] and len(card["classes"]) == 5
    assert p["images"] == record["data"]["sizes"]["test"] < 100 and p["same_argmax"] == p["images"]  # only the test images of its classes


def test_the_runner_exports_again_a_model_whose_run_was_trained_again(trained_run: dict, project_dir: Path, fixture_data: Path,
                                                                       capsys: pytest.CaptureFixture) -> None:
    card_path = export.export_run("mnist-lenet5", data_dir=str(fixture_data))["path"]
    retrained = run(make_config("lenet5", "mnist", profile="smoke"), data_dir=str(fixture_data)).record
    assert onnx_model.read_card(card_path)["superseded"].startswith("its run mnist-lenet5 was trained again")
    failures: list[str] = []
    runner.refresh_exports(project_dir, "smoke", str(fixture_data), failures)
    card = onnx_model.read_card(card_path)
    assert failures == [] and card["superseded"] is None and card["source"]["created"] == retrained["created"]
    assert "exported mnist-lenet5 again: its run mnist-lenet5 was trained again" in capsys.readouterr().out
    runner.refresh_exports(project_dir, "smoke", str(fixture_data), failures)  # nothing out of date: nothing exported
    assert "exported" not in capsys.readouterr().out and onnx_model.read_card(card_path)["exported"] == card["exported"]


def test_a_parity_failure_writes_nothing(trained_run: dict, project_dir: Path, fixture_data: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(export, "TOLERANCE", -1.0)  # no difference passes: as if the graph computed something else
    assert export.main(["mnist-lenet5", "--data-dir", str(fixture_data)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: The ONNX export of mnist-lenet5 disagrees with PyTorch") and "nothing was written" in err
    assert not (project_dir / "results" / "smoke" / "models").exists()


def test_export_refuses_a_missing_run_and_a_checkpoint_without_record(project_dir: Path, capsys: pytest.CaptureFixture) -> None:
    assert export.main(["nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No trained model of run 'nope'" in err and "Fix: " in err
    model = build_model("lenet5", 10, 1, 28)
    meta = {"arch": "lenet5", "arch_title": "LeNet-5", "classes": [str(i) for i in range(10)], "in_channels": 1, "image_size": 28,
            "mean": [0.13], "std": [0.31], "dataset": "mnist", "dataset_title": "MNIST", "data_sha256": None, "run_name": "mnist-lenet5",
            "profile": "smoke", "git_commit": None, "epoch": 1, "val_acc": 0.1, "fingerprint": "", "config": {}}
    save_trained(project_dir / "checkpoints" / "smoke" / "mnist-lenet5" / "best.pt", model.state_dict(), meta)
    assert export.main(["mnist-lenet5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No run record results/smoke/mnist-lenet5.json" in err
    assert not (project_dir / "results" / "smoke" / "models").exists()


def test_an_untrained_export_says_so_in_its_card(tmp_path_factory: pytest.TempPathFactory) -> None:
    card = onnx_model.read_card(untrained_card(tmp_path_factory, "cifar10"))
    assert card["name"] == "cifar10-lenet5-untrained" and card["title"] == "LeNet-5 (untrained) on CIFAR-10"
    assert card["source"] is None and card["test_acc"] is None and card["parity"] is None
    assert card["input"]["shape"] == ["batch", 3, 32, 32] and card["input"]["colour"] == "RGB"


def test_the_readme_lists_the_exported_models(project_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    assert models_table([]).startswith("_No exported models yet")
    install(untrained_card(tmp_path_factory, "mnist"), project_dir / "results", "quick", "mnist-lenet5", test_acc=0.9876)
    shutil.copy2(REPO_ROOT / "README.md", project_dir / "README.md")
    monkeypatch.setattr(runner, "architecture_table", lambda: "ARCHITECTURES\n")  # model costs take long and are not what is tested
    assert runner.main(["--tables-only"]) == 0
    section = (project_dir / "README.md").read_text().split("<!-- dnic:models:start -->")[1].split("<!-- dnic:models:end -->")[0]
    assert "| `mnist-lenet5` | LeNet-5 (untrained) on MNIST | `quick` | 98.76 | 100/100, 1.0e-07 |" in section
    assert "uint8 1×28×28 grey | [`mnist-lenet5.onnx`](results/quick/models/mnist-lenet5.onnx) |" in section


def test_plan_ends_with_the_deployment_notebook() -> None:
    last = runner.plan()[-1]
    assert (last.name, last.parameters, last.title) == ("60_deployment", {}, "# 60 · Deployment: export, parity and latency")
    assert (REPO_ROOT / last.source).is_file()


def test_the_deployment_study_exports_a_checkpoint_or_falls_back_to_a_committed_export(
        project_dir: Path, fixture_data: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnx_model, "result_roots", lambda: [project_dir / "results"])
    card = untrained_card(tmp_path_factory, "cifar10")
    install(card, project_dir / "results", "quick", "cifar10-resnet9", test_acc=0.61, val_acc=0.70)
    install(card, project_dir / "results", "quick", "cifar10-vgg16", test_acc=0.80, val_acc=0.50)  # better on test: must not matter
    committed = deployment.prepare("cifar10", "smoke", 10.0, str(fixture_data))  # no checkpoint here: the committed export
    assert committed.trained is None and committed.model.name == "cifar10-resnet9" and "committed export" in committed.reason
    assert "the best validation accuracy of its run (70.00%; chosen on validation, not test)" in committed.reason
    timings = committed.latency((1, 4), repeats=2)
    assert list(timings["engine"]) == ["onnxruntime", "onnxruntime"] and (timings["median ms per batch"] > 0).all()
    assert "PyTorch" not in deployment.latency_summary(timings)

    run(make_config("lenet5", "cifar10", profile="smoke"), data_dir=str(fixture_data))
    exported = deployment.prepare("cifar10", "smoke", 10.0, str(fixture_data))
    assert exported.trained is not None and exported.model.name == "cifar10-lenet5" and "exported now" in exported.reason
    assert "best validation accuracy" in exported.reason and "chosen on validation, not test" in exported.reason
    assert (project_dir / "results" / "smoke" / "models" / "cifar10-lenet5.onnx").is_file()
    assert exported.parity_table().loc["same top class"].iloc[0] == "100 of 100"
    timings = exported.latency((1, 4), repeats=2)
    assert sorted(timings["engine"]) == ["PyTorch eager", "PyTorch eager", "onnxruntime", "onnxruntime"]
    assert "PyTorch eager" in deployment.latency_summary(timings)
    exported.predictions(str(fixture_data), "smoke")
    assert (project_dir / "figures" / "smoke" / "cifar10-lenet5-deployment-predictions.png").is_file()
    assert deployment.prepare("cifar10", "smoke", 0.1, str(fixture_data)).trained is None  # over max_size_mb: not a candidate


def test_the_deployment_candidates_are_ranked_by_validation_accuracy_not_test(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """VGG16 wins on test, ResNet9 on validation: the test split must not choose the deployed model."""
    def record(name: str, val_acc: float, test_acc: float) -> dict:
        """A training record of CIFAR-10 in the smoke profile, with its checkpoint file here."""
        (checkpoint_dir("smoke", name) / "best.pt").parent.mkdir(parents=True)
        (checkpoint_dir("smoke", name) / "best.pt").touch()
        return {"kind": "train", "name": name, "profile": "smoke", "config": {"dataset": "cifar10"},
                "metrics": {"size_mb": 1.0, "best_val_acc": val_acc, "test_acc": test_acc}}

    records = [record("cifar10-vgg16", 0.60, 0.70), record("cifar10-resnet9", 0.65, 0.62), record("cifar10-lenet5", 0.50, 0.66)]
    monkeypatch.setattr(deployment, "load_records", lambda: records)
    assert [r["name"] for r in deployment.candidates("cifar10", "smoke", 10.0)] == ["cifar10-resnet9", "cifar10-vgg16", "cifar10-lenet5"]
