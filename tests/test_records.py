"""Run records (writing, validation, atomicity, loading) and the report tables built from them."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from dnic_utils import files, readme, records
from dnic_utils.errors import DnicError
from dnic_utils.models import REGISTRY
from dnic_utils.records import REQUIRED_KEYS, load_records, make_record, validate_record, write_record

METRICS = {
    "test_loss": 0.3, "test_acc": 0.91, "macro_precision": 0.9, "macro_recall": 0.89, "macro_f1": 0.895,
    "confusion": [[1, 0], [0, 1]], "train_loss": 0.25, "train_acc": 0.93, "best_val_acc": 0.92, "best_epoch": 1,
    "epochs_run": 1, "train_time_s": 12.5, "images_per_s": 1234.0, "latency_ms": {1: 1.5}, "amp": "fp32",
    "params": 61706, "trainable_params": 61706, "size_mb": 0.25, "flops": 846_000,
}


def train_record(dataset: str = "mnist", arch: str = "lenet5", profile: str = "smoke", test_acc: float = 0.91, created: str | None = None) -> dict:
    rec = make_record(
        "train", f"{dataset}-{arch}", profile, {"arch": arch, "dataset": dataset, "profile": profile}, {**METRICS, "test_acc": test_acc},
        device="cpu", data={"dataset": dataset, "title": dataset.upper()}, seed=0, wall_time_s=3.14159,
        arch_title=REGISTRY[arch].title if arch in REGISTRY else arch,
    )
    if created:
        rec["created"] = created
    return rec


# --------------------------------------------------------------------------------------------------------------
# Records


def test_make_record_carries_provenance() -> None:
    rec = train_record()
    assert set(REQUIRED_KEYS) <= set(rec)
    assert rec["arch_title"] == "LeNet-5"  # extra keys pass through
    assert rec["device"]["type"] == "cpu" and rec["device"]["threads"] >= 1
    assert {"python", "torch", "torchvision"} <= set(rec["versions"])
    assert rec["wall_time_s"] == 3.142
    assert rec["created"].endswith("+00:00")


def test_write_record_into_the_project_dir(project_dir: Path) -> None:
    rec = train_record()
    path = write_record(rec)
    assert path == project_dir / "results" / "smoke" / "mnist-lenet5.json"
    saved = json.loads(path.read_text())
    assert set(REQUIRED_KEYS) <= set(saved)
    assert saved["metrics"]["test_acc"] == 0.91 and saved["config"]["arch"] == "lenet5"
    assert [p.name for p in path.parent.iterdir()] == ["mnist-lenet5.json"]
    assert load_records() == [json.loads(json.dumps(rec, default=str))]


def test_each_profile_has_its_own_folder(project_dir: Path) -> None:
    a = write_record(train_record(profile="smoke"))
    b = write_record(train_record(profile="quick"))
    assert a.parent.name == "smoke" and b.parent.name == "quick" and a.name == b.name
    assert sorted(r["profile"] for r in load_records()) == ["quick", "smoke"]


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_validate_record_rejects_a_missing_key(key: str) -> None:
    rec = train_record()
    del rec[key]
    with pytest.raises(ValueError, match=key):
        validate_record(rec)


def test_validate_record_rejects_an_unknown_profile(project_dir: Path) -> None:
    rec = train_record()
    rec["profile"] = "nightly"
    with pytest.raises(ValueError, match="nightly"):
        validate_record(rec)
    with pytest.raises(ValueError):
        write_record(rec)
    assert not (project_dir / "results").exists()


@pytest.mark.parametrize("key", ["config", "metrics"])
def test_a_record_whose_config_or_metrics_is_not_an_object_is_left_out_naming_it(project_dir: Path, key: str) -> None:
    good = write_record(train_record())
    bad = {**train_record("fashion_mnist"), key: 3}
    (good.parent / "fashion_mnist-lenet5.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=f"{key} is not a JSON object"):
        validate_record(bad)
    with pytest.warns(UserWarning, match="fashion_mnist-lenet5.json"):
        assert [r["name"] for r in load_records()] == ["mnist-lenet5"]


@pytest.mark.parametrize("damage", ["short", "missing", "not base64"])
def test_damaged_predictions_raise_an_error_that_names_the_record_and_the_fix(damage: str) -> None:
    rec = train_record()
    rec["predictions"] = records.encode_predictions(torch.tensor([1, 0, 1]), torch.tensor([1, 1, 1]), torch.tensor([0.9, 0.6, 0.8]))
    assert records.test_predictions(rec)["y_pred"].tolist() == [1, 1, 1]
    if damage == "short":
        rec["predictions"]["count"] = 4
    elif damage == "missing":
        del rec["predictions"]["confidence"]
    else:
        rec["predictions"]["y_true"] = "%%%"
    with pytest.raises(DnicError, match="mnist-lenet5.*damaged(?s:.*)runner --only"):
        records.test_predictions(rec)


def test_write_is_atomic_when_the_rename_fails(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_record(train_record(test_acc=0.5))
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_record(train_record(test_acc=0.99))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_atomic_torch_save_cleans_up_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "ckpt" / "last.pt"
    files.atomic_torch_save({"epoch": 1}, target)
    before = target.read_bytes()
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError("no")))
    with pytest.raises(OSError):
        files.atomic_torch_save({"epoch": 2}, target)
    monkeypatch.undo()
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == ["last.pt"]


def test_load_records_skips_invalid_files_and_warns_naming_each(project_dir: Path) -> None:
    good = write_record(train_record())
    folder = good.parent
    (folder / "truncated.json").write_text('{"kind": "train", "name": ')
    (folder / "empty.json").write_text("")
    (folder / "partial.json").write_text(json.dumps({"kind": "train", "name": "x", "profile": "smoke"}))
    bad_profile = train_record(arch="vgg16")
    bad_profile["profile"] = "nightly"
    (folder / "bad-profile.json").write_text(json.dumps(bad_profile, default=str))
    (folder / "notes.txt").write_text("not a record")
    with pytest.warns(UserWarning) as caught:
        loaded = load_records()
    assert [r["name"] for r in loaded] == ["mnist-lenet5"]
    messages = sorted(str(w.message) for w in caught)
    assert [m.split(" (unreadable: ")[0] for m in messages] == [f"run record left out: results/smoke/{name}.json"
                                                                for name in ("bad-profile", "empty", "partial", "truncated")]
    assert "lacks config, metrics" in messages[2] and "'nightly'" in messages[0]
    assert not any(str(project_dir) in m for m in messages)  # paths relative to the project, never the machine's
    with pytest.warns(UserWarning):
        assert load_records(project_dir / "results") == loaded
    assert load_records(project_dir / "nowhere") == []


def test_load_records_skips_json_that_is_not_an_object(project_dir: Path) -> None:
    good = write_record(train_record())
    (good.parent / "number.json").write_text("42")
    with pytest.warns(UserWarning, match="results/smoke/number.json"):
        assert [r["name"] for r in load_records()] == ["mnist-lenet5"]


def test_the_results_section_names_the_records_it_could_not_read(project_dir: Path) -> None:
    """A corrupt record's row is not left out of the tables without a word: the section names the file and why."""
    good = write_record(train_record("mnist", "lenet5", profile="quick"))
    (good.parent / "mnist-vgg16.json").write_text('{"kind": "train"')
    (good.parent / "mnist-resnet18.json").write_text(json.dumps({"kind": "train", "name": "mnist-resnet18"}))
    loaded, unreadable = records.scan_records()
    assert [r["name"] for r in loaded] == ["mnist-lenet5"]
    text = readme.readme_tables(loaded, unreadable)
    assert "| LeNet-5" in text
    assert "\n_Not shown: results/quick/mnist-resnet18.json (unreadable: run record lacks profile, config, metrics," in text
    assert "\n_Not shown: results/quick/mnist-vgg16.json (unreadable: Expecting ',' delimiter: line 1 column 17 (char 16))_\n" in text
    assert str(project_dir) not in text
    assert readme.readme_tables([], unreadable).startswith("_No run records yet")
    assert "_Not shown: results/quick/mnist-vgg16.json" in readme.readme_tables([], unreadable)


# --------------------------------------------------------------------------------------------------------------
# Report tables


def test_best_records_prefers_the_higher_profile_in_any_order() -> None:
    smoke = train_record(profile="smoke", test_acc=0.99, created="2030-01-01T00:00:00+00:00")  # newer and better
    quick = train_record(profile="quick", test_acc=0.80, created="2020-01-01T00:00:00+00:00")
    for order in ([smoke, quick], [quick, smoke]):
        best = readme.best_records(order)
        assert list(best) == [("mnist", "lenet5")]
        assert best[("mnist", "lenet5")] is quick


def test_best_records_takes_the_newest_among_equal_profiles() -> None:
    old = train_record(created="2024-01-01T00:00:00+00:00")
    new = train_record(created="2025-01-01T00:00:00+00:00")
    for order in ([old, new], [new, old]):
        assert readme.best_records(order)[("mnist", "lenet5")] is new


def test_best_records_ignores_other_kinds_and_keeps_pairs_apart() -> None:
    data_record = make_record("data", "data-exploration", "full", {}, {}, device="cpu", data={}, seed=0, wall_time_s=1.0)
    recs = [data_record, train_record("mnist", "lenet5"), train_record("mnist", "resnet18"), train_record("cifar10", "lenet5")]
    assert set(readme.best_records(recs)) == {("mnist", "lenet5"), ("mnist", "resnet18"), ("cifar10", "lenet5")}


def test_best_records_leaves_out_runs_with_non_default_parameters() -> None:
    canonical = train_record(created="2024-01-01T00:00:00+00:00")
    custom = train_record(created="2025-01-01T00:00:00+00:00")
    custom["config"]["variant"] = "1a2b3c4d"
    assert readme.best_records([canonical, custom])[("mnist", "lenet5")] is canonical
    assert readme.best_records([custom]) == {}


RESULT_COLUMNS = ["model", "profile", "epochs", "size (MB)", "trainable params", "train loss", "test loss", "train acc (%)", "test acc (%)",
                  "test views", "macro P (%)", "macro R (%)", "macro F1 (%)", "MFLOPs/img", "train time (s)", "images/s", "CPU wait (%)", "device", "precision", "date"]


def test_results_table_has_one_row_per_architecture() -> None:
    recs = [train_record("mnist", "resnet18"), train_record("mnist", "lenet5", profile="smoke"), train_record("mnist", "lenet5", profile="quick"),
            train_record("mnist", "vgg16"), train_record("cifar10", "vgg16", test_acc=0.5)]
    table = readme.results_table(recs, "mnist")
    assert list(table.columns) == RESULT_COLUMNS
    assert table["model"].tolist() == ["LeNet-5", "VGG16", "ResNet18"]  # registry order, one row each
    lenet = table.iloc[0]
    assert lenet["profile"] == "quick" and lenet["epochs"] == "1"  # the epochs it trained: a profile's rows may mix while its batch reruns
    assert lenet["test acc (%)"] == "91.00" and lenet["trainable params"] == "61,706" and lenet["MFLOPs/img"] == "0.8"
    assert lenet["device"].startswith("CPU (") and lenet["precision"] == "fp32" and len(lenet["date"]) == 10
    assert lenet["CPU wait (%)"] == "—"  # an older record, from before the wait was measured
    waited = train_record("mnist", "lenet5")
    waited["metrics"]["train_cpu_wait"] = 0.437
    assert readme.results_table([waited], "mnist").iloc[0]["CPU wait (%)"] == "44"
    assert len(readme.results_table(recs, "cifar10")) == 1
    assert readme.results_table(recs, "fashion_mnist").empty


def test_a_test_time_augmented_accuracy_shows_its_views() -> None:
    plain, digits, photos = train_record("mnist", "lenet5"), train_record("mnist", "lenet5"), train_record("cifar10", "fastnet")
    digits["config"]["tta"] = photos["config"]["tta"] = "multiview"
    assert readme.results_table([plain], "mnist").iloc[0]["test views"] == "1"
    assert readme.results_table([digits], "mnist").iloc[0]["test views"] == "3 (multiview)"  # digits are never mirrored
    assert readme.results_table([photos], "cifar10").iloc[0]["test views"] == "6 (multiview)"


def with_device(record: dict, name: str, created: str, amp: str = "fp32") -> dict:
    """The record as if run on a CPU of that name with that precision and date."""
    return {**record, "device": {"type": "cpu", "name": name, "threads": 2}, "created": created, "metrics": {**record["metrics"], "amp": amp}}


def test_replaced_rows_name_the_old_and_new_device_precision_and_date() -> None:
    old = with_device(train_record("cifar10", "resnet18", profile="quick"), "Intel Xeon", "2026-11-20T10:00:00+00:00")
    new = with_device(train_record("cifar10", "resnet18", profile="quick"), "AMD EPYC", "2026-11-30T10:00:00+00:00")
    kept = train_record("mnist", "lenet5", profile="quick")
    smoke = with_device(train_record("mnist", "vgg16"), "Intel Xeon", "2026-11-21T10:00:00+00:00")
    quick = with_device(train_record("mnist", "vgg16", profile="quick"), "Intel Xeon", "2026-11-22T10:00:00+00:00", amp="bfloat16")
    added = train_record("mnist", "resnet18", profile="quick")
    def loaded(*recs: dict) -> list[dict]:
        return [json.loads(json.dumps(r, default=str)) for r in recs]  # as load_records reads them, twice

    lines = readme.replaced_rows(loaded(old, kept, smoke), loaded(kept, new, smoke, quick, added))
    assert lines == [
        "replaced README row CIFAR-10 · ResNet18 · quick: CPU (Intel Xeon, 2 threads) fp32 2026-11-20 → CPU (AMD EPYC, 2 threads) fp32 2026-11-30",
        "replaced README row MNIST · VGG16 · smoke → quick: CPU (Intel Xeon, 2 threads) fp32 2026-11-21 → CPU (Intel Xeon, 2 threads) bfloat16 2026-11-22",
    ]  # the unchanged row and the new one are not replacements


def markers(name: str) -> tuple[str, str]:
    return f"<!-- dnic:{name}:start -->", f"<!-- dnic:{name}:end -->"


@pytest.fixture
def readme_file(tmp_path: Path) -> Path:
    (rs, re_), (ns, ne) = markers("results"), markers("notebooks")
    path = tmp_path / "README.md"
    path.write_text(f"# Title\n\nIntro text.\n\n{rs}\nold table\n{re_}\n\n## Notebooks\n\n{ns}\nold index\n{ne}\n\nKeep me.\n")
    return path


def test_update_readme_replaces_only_the_marked_section(readme_file: Path) -> None:
    recs = [train_record("mnist", "lenet5"), train_record("mnist", "resnet18")]
    start, end = markers("results")
    assert readme.update_readme(readme_file, {"results": readme.readme_tables(recs)}) is True
    text = readme_file.read_text()
    before, rest = text.split(start)
    inside, after = rest.split(end)
    assert before == "# Title\n\nIntro text.\n\n"
    assert after == f"\n\n## Notebooks\n\n{markers('notebooks')[0]}\nold index\n{markers('notebooks')[1]}\n\nKeep me.\n"
    assert "old table" not in inside
    assert "| LeNet-5" in inside and "| ResNet18" in inside and "#### MNIST" in inside
    assert readme.update_readme(readme_file, {"results": readme.readme_tables(recs)}) is False  # unchanged the second time
    assert readme_file.read_text() == text


def test_update_readme_replaces_several_sections(readme_file: Path) -> None:
    readme.update_readme(readme_file, {"results": "RESULTS\n", "notebooks": "INDEX\n"})
    text = readme_file.read_text()
    assert "old table" not in text and "old index" not in text
    assert f"{markers('results')[0]}\nRESULTS\n{markers('results')[1]}" in text
    assert f"{markers('notebooks')[0]}\nINDEX\n{markers('notebooks')[1]}" in text
    assert text.startswith("# Title\n\nIntro text.\n\n") and text.endswith("\n\nKeep me.\n")


def test_readme_tables_keep_the_formatted_numbers() -> None:
    rec = train_record("mnist", "lenet5", test_acc=0.9)
    rec["metrics"].update(train_loss=0.49, test_loss=2.7e12)  # a diverged smoke run must not turn into scientific notation
    text = readme.readme_tables([rec])
    row = next(line for line in text.splitlines() if line.startswith("| LeNet-5"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[RESULT_COLUMNS.index("train loss")] == "0.490" and cells[RESULT_COLUMNS.index("test acc (%)")] == "90.00"
    assert cells[RESULT_COLUMNS.index("test loss")] == "2700000000000.000"
    rule = [c.strip() for c in text.splitlines()[text.splitlines().index(row) - 1].strip("|").split("|")]
    assert rule[0].startswith(":") and rule[RESULT_COLUMNS.index("test acc (%)")].endswith(":")  # names left, numbers right


def test_readme_tables_without_records() -> None:
    assert "No run records yet" in readme.readme_tables([])


def test_update_readme_without_markers_raises(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_text("# Title\n\nNo markers here.\n")
    with pytest.raises(DnicError, match="markers") as refused:
        readme.update_readme(path, {"results": readme.readme_tables([train_record()])})
    assert "--tables-only" in refused.value.fix
    assert path.read_text() == "# Title\n\nNo markers here.\n"


def test_tables_only_on_a_readme_without_markers_says_how_to_restore_them(project_dir: Path, capsys: pytest.CaptureFixture,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from dnic_utils import runner

    monkeypatch.setattr(runner, "architecture_table", lambda: "ARCHITECTURES\n")  # model costs take long and are not what is tested
    (project_dir / "README.md").write_text("# Title\n")
    assert runner.main(["--tables-only"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "lacks the markers" in err and "Fix: restore the two marker lines" in err


def test_update_readme_with_one_section_missing_changes_nothing(readme_file: Path) -> None:
    before = readme_file.read_text()
    with pytest.raises(ValueError, match="dnic:figures:start"):
        readme.update_readme(readme_file, {"results": "NEW\n", "figures": "NEW\n"})
    assert readme_file.read_text() == before


def test_git_commit_names_the_checkout_head() -> None:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(records.__file__).parent, capture_output=True, text=True).stdout.strip()
    assert records.git_commit().removesuffix("-dirty") == head


def test_only_code_changes_count_as_uncommitted(tmp_path: Path) -> None:
    """Generated outputs (results, the benchmarks' RESULTS.md) changing must not mark the next record's commit '-dirty'."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, capture_output=True, text=True, check=True).stdout

    for name in ("benchmarks/RESULTS.md", "benchmarks/speed.py", "results/quick/a.json", "dnic_utils/train.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("v1\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-q", "-m", "v1")
    head = git("rev-parse", "HEAD").strip()
    (tmp_path / "benchmarks/RESULTS.md").write_text("v2\n")
    (tmp_path / "results/quick/a.json").write_text("v2\n")
    assert records.git_commit(tmp_path) == head
    (tmp_path / "benchmarks/speed.py").write_text("v2\n")
    assert records.git_commit(tmp_path) == f"{head}-dirty"
    git("checkout", "-q", "--", "benchmarks/speed.py")
    (tmp_path / "dnic_utils/train.py").write_text("v2\n")
    assert records.git_commit(tmp_path) == f"{head}-dirty"


def test_git_commit_outside_git_comes_from_dnic_git_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_git(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("git")

    monkeypatch.setattr(records.subprocess, "run", no_git)
    monkeypatch.delenv("DNIC_GIT_COMMIT", raising=False)
    assert records.git_commit() is None
    monkeypatch.setenv("DNIC_GIT_COMMIT", "0123abc")
    assert records.git_commit() == "0123abc"
