"""The predict command and model names: folders, JSON, one line per bad file, and which exported model a name or no name means."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT
from deploy_models import TEXT, image_bytes, install, png_header, truncated_png, untrained_card
from dnic_utils import onnx_model, predict
from dnic_utils.images import MAX_PIXELS
from dnic_utils.readme import models_table


@pytest.fixture
def results(project_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch results/ holding an RGB CIFAR-10 and a grey MNIST model, the only place models are looked for."""
    root = project_dir / "results"
    install(untrained_card(tmp_path_factory, "cifar10"), root, "smoke", "cifar10-lenet5", test_acc=0.3)
    install(untrained_card(tmp_path_factory, "mnist"), root, "smoke", "mnist-lenet5", test_acc=0.9)
    monkeypatch.setattr(onnx_model, "result_roots", lambda: [root])  # not the repository's committed models
    return root


def write(folder: Path, files: dict[str, bytes]) -> Path:
    """Write files into a folder and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def test_names_resolve_to_the_highest_profile_and_no_name_to_cifar10(results: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    install(untrained_card(tmp_path_factory, "mnist"), results, "quick", "mnist-lenet5", test_acc=0.95)
    assert onnx_model.resolve("mnist-lenet5") == results / "quick" / "models" / "mnist-lenet5.json"
    # a CIFAR-10 model wins when none is named, even when another dataset has a higher profile's model
    assert onnx_model.resolve(None) == results / "smoke" / "models" / "cifar10-lenet5.json"
    install(untrained_card(tmp_path_factory, "cifar10"), results, "smoke", "cifar10-minigooglenet", test_acc=0.2, val_acc=0.6)
    assert onnx_model.resolve(None) == results / "smoke" / "models" / "cifar10-minigooglenet.json"  # the better on validation, not test
    onnx_path = results / "quick" / "models" / "mnist-lenet5.onnx"
    assert onnx_model.resolve(str(onnx_path)) == onnx_path.with_suffix(".json")
    with pytest.raises(onnx_model.DnicError, match="(?s)No exported model named 'nope'.*mnist-lenet5"):
        onnx_model.resolve("nope")


def test_an_export_whose_run_was_trained_again_is_flagged_and_not_the_default(results: Path, tmp_path_factory: pytest.TempPathFactory,
                                                                               tmp_path: Path) -> None:
    card_path = install(untrained_card(tmp_path_factory, "cifar10"), results, "smoke", "cifar10-vgg16", test_acc=0.9, val_acc=0.9)
    card = json.loads(card_path.read_text())
    card["source"].update(run="cifar10-vgg16", record="results/smoke/cifar10-vgg16.json", created="2026-11-01T10:00:00+00:00")
    card_path.write_text(json.dumps(card))
    record = results / "smoke" / "cifar10-vgg16.json"
    record.write_text(json.dumps({"created": card["source"]["created"]}))
    assert onnx_model.read_card(card_path)["superseded"] is None and onnx_model.resolve(None) == card_path  # current: the best on validation
    record.write_text(json.dumps({"created": "2026-11-20T10:00:00+00:00"}))  # the run trained again: the export stands for the old run
    stale = onnx_model.read_card(card_path)["superseded"]
    assert stale == "its run cifar10-vgg16 was trained again (2026-11-20) after this export was made from the run of 2026-11-01"
    assert onnx_model.resolve(None) == results / "smoke" / "models" / "cifar10-lenet5.json"  # a current export wins
    assert predict.table(onnx_model.load_model("cifar10-vgg16"), [], 3).endswith(f"warning: this export is out of date: {stale}; "
                                                                                "export it again (python -m dnic_utils.export RUN)")
    assert f"LeNet-5 (untrained) on CIFAR-10 — **out of date**: {stale}; export it again" in models_table(onnx_model.find_cards([results]))
    record.unlink()
    assert "its run record results/smoke/cifar10-vgg16.json is missing" in onnx_model.read_card(card_path)["superseded"]
    elsewhere = shutil.copytree(card_path.parent, tmp_path / "exports")  # exported with --out: no record beside it to ask
    assert onnx_model.read_card(elsewhere / card_path.name)["superseded"] is None


def test_no_name_without_a_cifar10_model_takes_the_first_found(results: Path) -> None:
    for path in (results / "smoke" / "models").glob("cifar10-*"):
        path.unlink()
    assert onnx_model.resolve(None) == results / "smoke" / "models" / "mnist-lenet5.json"


def test_a_folder_is_classified_and_a_corrupt_file_gets_one_line(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = write(tmp_path / "images", {"a_grey.png": image_bytes((20, 30)), "b_rgb.JPG": image_bytes((40, 40, 3), "JPEG"),
                                         "c_broken.png": truncated_png(), "notes.txt": b"not an image, not looked at"})
    assert predict.main([str(folder), "--model", "cifar10-lenet5"]) == 1
    out, err = capsys.readouterr()
    assert out.startswith("model cifar10-lenet5: LeNet-5 (untrained) on CIFAR-10 (test accuracy 30.00%, profile smoke)")
    rows = [line for line in out.splitlines() if line.startswith(str(folder))]
    assert [row.split()[0] for row in rows] == [str(folder / "a_grey.png"), str(folder / "b_rgb.JPG")]  # grey converted for an RGB model
    assert all(row.count("%") == 3 for row in rows) and "1st" in out and "3rd" in out
    assert err.count("\n") == 1 and err.startswith(f"error: {folder / 'c_broken.png'} is corrupt or truncated") and "Traceback" not in err


def test_json_gives_the_top_k_and_every_probability(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = image_bytes((40, 50, 3), seed=3)
    path = write(tmp_path, {"rgb.png": data}) / "rgb.png"
    assert predict.main([str(path), "--model", "mnist-lenet5", "--json", "--top-k", "2"]) == 0
    reply = json.loads(capsys.readouterr().out)
    model = onnx_model.load_model("mnist-lenet5")
    expected = model.probabilities(model.decode(data)[None])[0]  # RGB made grey for the MNIST model
    [result] = reply["predictions"]
    assert reply["model"]["name"] == "mnist-lenet5" and reply["errors"] == [] and result["image"] == str(path)
    assert [t["class"] for t in result["top"]] == [model.classes[i] for i in np.argsort(-expected)[:2]]
    assert list(result["probabilities"].values()) == pytest.approx(expected.tolist()) and sum(result["probabilities"].values()) == pytest.approx(1)


def test_every_unusable_input_gets_one_line_and_the_rest_is_classified(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    folder = write(tmp_path / "in", {"good.png": image_bytes((28, 28)), "empty.png": b"", "text.png": TEXT, "huge.png": png_header(20_000, 20_000),
                                     "over.png": png_header(8_000, 6_000), "cut.png": truncated_png()})
    empty_folder = write(tmp_path / "nothing", {"readme.txt": b"no images here"})
    args = [str(folder / n) for n in ("good.png", "empty.png", "text.png", "huge.png", "over.png", "cut.png")]
    assert predict.main([*args, str(tmp_path / "missing.png"), str(empty_folder), "--json"]) == 1
    out, err = capsys.readouterr()
    reply = json.loads(out)
    assert [p["image"] for p in reply["predictions"]] == [str(folder / "good.png")]
    lines = err.splitlines()
    assert len(lines) == len(reply["errors"]) == 7 and all(line.startswith("error: ") for line in lines) and "Traceback" not in err
    expected = [f"The folder {empty_folder} holds no", "empty.png is empty (0 bytes)", "text.png is not a PNG or JPEG image",
                f"huge.png claims more than {MAX_PIXELS // 10**6} megapixels", "over.png is 8,000 × 6,000 pixels", "cut.png is corrupt or truncated",
                "missing.png does not exist"]
    for fragment in expected:
        assert sum(fragment in line for line in lines) == 1, fragment


def test_a_folder_that_cannot_be_listed_is_one_problem_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    locked = write(tmp_path / "locked", {"a.png": image_bytes((28, 28))})
    real_iterdir = Path.iterdir

    def iterdir(self: Path):  # as for a folder without read permission (root reads any, so the refusal is simulated)
        """Path.iterdir, refused for the locked folder."""
        if self == locked:
            raise PermissionError(13, "Permission denied")
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    good = write(tmp_path / "open", {"b.png": image_bytes((28, 28))})
    paths, problems = predict.image_paths([str(locked), str(good)])
    assert paths == [good / "b.png"]
    assert problems == [(str(locked), f"The folder {locked} cannot be read (Permission denied). Fix: check its permissions, or pass its files.")]


def test_the_command_line_runs_without_a_traceback(results: Path, tmp_path: Path) -> None:
    bad = write(tmp_path, {"text.png": TEXT}) / "text.png"
    model = results / "smoke" / "models" / "cifar10-lenet5.onnx"
    env = {**os.environ, "DNIC_PROJECT_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "dnic_utils.predict", str(bad), "--model", str(model)], capture_output=True, text=True,
                          cwd=REPO_ROOT, env=env, timeout=300)
    assert done.returncode == 1 and done.stderr == f"error: {bad} is not a PNG or JPEG image. Fix: send a PNG or JPEG file.\n"
    assert "model cifar10-lenet5" in done.stdout


@pytest.mark.parametrize(("args", "message"), [(["--model", "nope"], "error: No exported model named 'nope'."),
                                               (["--model", "missing.onnx"], "error: No model card at missing.json.")])
def test_an_unknown_model_is_one_line_and_status_2(args: list[str], message: str, results: Path, capsys: pytest.CaptureFixture) -> None:
    assert predict.main(["x.png", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(message) and "Fix: " in err


def test_no_exported_model_at_all_says_how_to_make_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(onnx_model, "result_roots", lambda: [tmp_path])
    assert predict.main(["x.png"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No exported model found") and "python -m dnic_utils.export" in err


def test_a_changed_model_file_is_refused(results: Path) -> None:
    onnx = results / "smoke" / "models" / "mnist-lenet5.onnx"
    onnx.write_bytes(onnx.read_bytes() + b"\0")
    with pytest.raises(onnx_model.DnicError, match="does not match the checksum"):
        onnx_model.load_model("mnist-lenet5")
