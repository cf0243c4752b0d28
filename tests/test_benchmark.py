"""The speed benchmark (benchmarks/speed.py): one tiny run end to end, its arithmetic, and its handling of bad input."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dnic_utils.records import CODE_PATHS, REQUIRED_KEYS, make_record, write_record
from dnic_utils.devices import amp_dtype, amp_label, device_slug

REPO_ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("speed", REPO_ROOT / "benchmarks" / "speed.py")
speed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(speed)

TINY = ["--arch", "lenet5", "--steps", "1", "--warmup", "0", "--batch-size", "16", "--workers", "0",
        "--accuracy-epochs", "fastnet=1", "--accuracy-batch-size", "32", "--accuracy-train-size", "64", "--accuracy-eval-size", "20",
        "--peak-size", "32", "--peak-repeats", "2", "--mfu-batch-size", "2", "--mfu-steps", "1"]


def legacy_record() -> dict:
    """A record of the former loader benchmark, which measured only the pipeline."""
    return make_record("benchmark", "bench-loader-cpu-cifar10", "quick",
                       {"dataset": "cifar10", "arch": ["lenet5"], "steps": 40, "warmup": 5, "batch_size": 64, "workers": 2, "amp": "fp32"},
                       {"lenet5": {"conventional": 2481.8, "dnic": 7312.2, "ratio": 2.946}}, device="cpu", data={"title": "CIFAR-10"}, seed=0,
                       wall_time_s=1.0)


def test_tiny_run_writes_one_record_and_regenerates_results(fixture_data: Path, project_dir: Path, tmp_path: Path) -> None:
    write_record(legacy_record())  # an older pipeline-only record keeps its row
    repo_md = (REPO_ROOT / "benchmarks" / "RESULTS.md").read_bytes()
    md = tmp_path / "RESULTS.md"

    assert speed.main(["--data-dir", str(fixture_data), "--results-md", str(md), *TINY]) == 0

    [path] = (project_dir / "results").glob("*/bench-speed-*.json")
    rec = json.loads(path.read_text())
    precision = amp_label(amp_dtype("auto", speed.default_device()))  # peak and training in the precision training uses
    assert set(REQUIRED_KEYS) <= set(rec) and rec["kind"] == "benchmark" and rec["name"] == f"bench-speed-{device_slug(speed.default_device(), precision)}-fastnet1"
    assert set(rec["config"]) == set(rec["metrics"]) == {"pipeline", "time_to_accuracy", "mfu"}
    assert rec["data"]["cifar10"]["title"] == "CIFAR-10 (JPEG q75 copy)"
    pipe = rec["metrics"]["pipeline"]["lenet5"]
    assert pipe["conventional"] > 0 and pipe["dnic"] > 0 and pipe["ratio"] == pytest.approx(pipe["dnic"] / pipe["conventional"])
    assert rec["config"]["time_to_accuracy"]["skipped"] is None
    acc = rec["metrics"]["time_to_accuracy"]["fastnet"]
    assert acc["tta"] == "multiview" and len(acc["curve"]) >= 2 and acc["curve"][-1]["images_seen"] == 64  # its recipe, and its curve
    assert acc["epochs_run"] == 1 and acc["train_images"] == 64 and acc["test_images"] == 20 and 0 <= acc["test_acc"] <= 1
    assert acc["time_to_target_s"] == (acc["wall_time_s"] if acc["test_acc"] >= 0.94 else None)
    peaks = rec["metrics"]["mfu"]
    assert set(peaks["nets"]) == {"resnet18", "fastnet"} and peaks["peak_flops"] > 0 and peaks["conv_peak_flops"] > 0
    for mfu in peaks["nets"].values():
        assert mfu["train_flops_per_image"] == 3 * mfu["forward_flops"] > 0
        assert mfu["mfu"] == pytest.approx(mfu["achieved_flops"] / peaks["peak_flops"])
        assert mfu["mfu_conv"] == pytest.approx(mfu["achieved_flops"] / peaks["conv_peak_flops"])
    mfu = peaks["nets"]["resnet18"]

    text = md.read_text()
    assert "do not edit by hand" in text and text.count("\n## ") == 8
    _, pipeline, accuracy_table, mfu_table, step_table, operator_table, budget_table, recipe_table, load_table = text.split("## ")
    assert all("No runs yet" in t for t in (step_table, operator_table, budget_table, recipe_table, load_table))
    assert "| 2,482 | 7,312 | **2.95×** |" in pipeline and pipeline.count("| lenet5 |") == 2  # the legacy row and this run's
    assert "| fastnet | 1/1 |" in accuracy_table
    assert f"| {acc['best_val_acc']:.2%} | {acc['test_acc']:.2%} | 94%: " in accuracy_table and " · 93%: " in accuracy_table  # plateau and milestones
    assert f"**{mfu['mfu']:.1%}**" in mfu_table
    assert rec["config"]["mfu"]["amp"] == precision and f"| {precision} |" in mfu_table
    assert (REPO_ROOT / "benchmarks" / "RESULTS.md").read_bytes() == repo_md


def test_results_without_speed_runs_say_so(tmp_path: Path) -> None:
    rec = legacy_record()
    md = tmp_path / "RESULTS.md"
    speed.write_results_md(md, [rec, {**rec, "kind": "train"}])
    _, pipeline, accuracy, mfu, step_table, operator_table, budget_table, recipe_table, load_table = md.read_text().split("## ")
    assert pipeline.count("| lenet5 |") == 1 and "| 2,482 | 7,312 | **2.95×** |" in pipeline
    assert all("No runs yet" in table for table in (accuracy, mfu, budget_table, recipe_table, load_table))


def test_load_benchmark_arithmetic_and_its_results_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))  # load.py imports speed as its neighbour
    load_spec = importlib.util.spec_from_file_location("load", REPO_ROOT / "benchmarks" / "load.py")
    load = importlib.util.module_from_spec(load_spec)
    load_spec.loader.exec_module(load)
    m = load.summary([0.010] * 98 + [0.030, 0.050], ["HTTP 500: boom"], wall_s=2.0, rss={"before": 100 * 2**20, "peak": 120 * 2**20, "after": 105 * 2**20})
    assert m["requests"] == 100 and m["requests_per_s"] == 50 and m["errors"] == 1 and m["error_examples"] == ["HTTP 500: boom"]
    assert m["p50_ms"] == pytest.approx(10) and 30 < m["p99_ms"] < 50 and m["max_ms"] == pytest.approx(50)
    assert m["rss_growth"] == pytest.approx(0.05) and m["rss_peak_growth"] == pytest.approx(0.20)
    models = {"lenet5": {"name": "mnist-lenet5-untrained", "title": "LeNet-5 (untrained) on MNIST", "weights": "untrained", "size_mb": 0.27,
                         "input": "1×28×28", "image_bytes": 900}}
    rec = make_record("benchmark", "bench-load-cpu", "quick", {"requests": 100, "concurrency": 8, "warmup": 200, "models": models},
                      {"lenet5": m}, device="cpu", data={}, seed=0, wall_time_s=3.0, packages={"onnxruntime": "1.32.0"})
    md = tmp_path / "RESULTS.md"
    speed.write_results_md(md, [rec])
    load_table = md.read_text().split("## ")[-1]
    assert "| LeNet-5 (untrained) on MNIST (1×28×28) | untrained | 100 | 8 | 50 | 10.0 |" in load_table
    assert "| **1** | 100 → 105 (peak 120) | **+5.0%** | 1.32.0 |" in load_table

    monkeypatch.setattr(load, "measure", lambda arch, args, folder: (models["lenet5"], m))  # the service itself is tested in test_deploy_*
    monkeypatch.setenv("DNIC_PROJECT_DIR", str(tmp_path / "project"))
    path = load.benchmark(load.parse_args(["--models", "lenet5", "--requests", "100", "--results-md", str(md)]))
    assert json.loads(path.read_text())["metrics"] == {"lenet5": m} and path.name.startswith("bench-load-")
    assert "| LeNet-5 (untrained) on MNIST (1×28×28) | untrained | 100 | 8 | 50 | 10.0 |" in md.read_text()


def test_matmul_peak_arithmetic() -> None:
    a, b = torch.ones(16, 24), torch.ones(24, 16)
    with FlopCounterMode(display=False) as counter:
        a @ b
    assert counter.get_total_flops() == 2 * 16 * 24 * 16
    assert speed.matmul_flops(16) == 2 * 16**3
    assert speed.peak_flops(1000, [0.5, 0.002, 0.004]) == pytest.approx(1e12)  # the fastest repeat counts
    seconds = speed.matmul_seconds("cpu", 32, 3)
    assert len(seconds) == 3 and all(s > 0 for s in seconds)


def test_mfu_arithmetic() -> None:
    m = speed.mfu_metrics(images_per_second=1000.0, forward_flops=10**9, peak=6e12)
    assert m["train_flops_per_image"] == 3 * 10**9
    assert m["achieved_flops"] == pytest.approx(3e12)
    assert m["mfu"] == pytest.approx(0.5)


@pytest.mark.parametrize(("acc", "reached", "time"), [(0.95, True, 12.5), (0.94, True, 12.5), (0.9399, False, None)])
def test_time_to_target(acc: float, reached: bool, time: float | None) -> None:
    assert speed.accuracy_outcome(acc, 12.5, 0.94) == {"reached": reached, "time_to_target_s": time}


def test_a_run_with_other_accuracy_epochs_gets_a_record_of_its_own() -> None:
    cpu = device_slug("cpu", "fp32")
    assert speed.record_name("cpu", "fp32", [("fastnet", 10)]) == f"bench-speed-{cpu}" and cpu.endswith("-fp32")
    assert speed.record_name("cpu", "bfloat16", [("fastnet", 10)]) == f"bench-speed-{device_slug('cpu', 'bfloat16')}"  # beside fp32's
    assert speed.record_name("cpu", "fp32", [("fastnet", 25)]) == f"bench-speed-{cpu}-fastnet25"
    assert speed.record_name("cpu", "fp32", [("resnet9", 12), ("fastnet", 10)]) == f"bench-speed-{cpu}-resnet912-fastnet10"
    assert speed.record_name("cpu", "fp32", [("fastnet", 10)], skip_accuracy=True) == f"bench-speed-{cpu}-no-accuracy"  # never replaces one that has it


def accuracy_record(created: str, epochs: int, test_acc: float, wall: float, reached: bool = False, amp: str = "bfloat16") -> dict:
    """A bench-speed record holding one FastNet time-to-accuracy run, as benchmark() writes it."""
    run = {"epochs": epochs, "epochs_run": epochs, "amp": amp, "reached": reached, "test_acc": test_acc, "best_val_acc": test_acc - 0.01,
           "wall_time_s": wall, "curve": [{"train_time_s": 1.0, "val_acc": 0.5}, {"train_time_s": 2.0, "val_acc": test_acc - 0.02}]}
    return {"created": created, "device": {"type": "cpu", "name": "Xeon", "threads": 2}, "data": {"cifar10": {"title": "CIFAR-10 (JPEG q75 copy)"}},
            "config": {"time_to_accuracy": {"dataset": "cifar10", "target": 0.94}}, "metrics": {"time_to_accuracy": {"fastnet": run}}}


def test_a_net_that_missed_the_target_at_two_budgets_gets_a_plateau_note() -> None:
    short, long = accuracy_record("2026-12-03T10", 10, 0.8986, 462.0), accuracy_record("2026-12-03T11", 25, 0.9105, 1060.0)
    note = speed.plateau_notes([long, short])
    assert "10 epochs reached 89.86% test accuracy (88.86% best validation) in 462 s, 25 epochs 91.05% (90.05%) in 1,060 s" in note
    assert "2.3× the time for +1.19 points. Neither reached 94%" in note and "validation slice was 89.05%" in note
    assert speed.plateau_notes([short]) == ""  # one budget shows no plateau
    assert speed.plateau_notes([short, accuracy_record("2026-12-03T11", 25, 0.9405, 1060.0, reached=True)]) == ""  # the target was met
    assert speed.plateau_notes([short, accuracy_record("2026-12-03T11", 25, 0.9, 3000.0, amp="fp32")]) == ""  # another precision is not the same run


def test_peak_timings_drop_the_warm_up_calls() -> None:
    assert len(speed.conv_seconds("cpu", (1, 4, 4), 2, torch.float32)) == 2
    assert len(speed.matmul_seconds("cpu", 8, 2, torch.float32)) == 2


def test_first_reached_reads_the_training_time_of_the_first_point_at_the_level() -> None:
    curve = [{"train_time_s": 10.0, "val_acc": 0.85}, {"train_time_s": 20.0, "val_acc": 0.91}, {"train_time_s": 30.0, "val_acc": 0.90},
             {"train_time_s": 40.0, "val_acc": 0.93}]
    assert speed.first_reached(curve, 0.90) == 20.0
    assert speed.first_reached(curve, 0.93) == 40.0
    assert speed.first_reached(curve, 0.94) is None
    assert speed.first_reached([], 0.5) is None


@pytest.mark.parametrize(("args", "message"), [
    (["--arch", "lenet6"], "error: Unknown architecture 'lenet6'."),
    (["--accuracy-epochs", "resnet99=3"], "error: Unknown architecture 'resnet99'."),
    (["--dataset", "svhn"], "error: Unknown dataset 'svhn'."),
    (["--accuracy-lr", "20"], "error: Parameter `lr` must be a number in (0, 10)"),
    (["--data-dir", "EMPTY"], "holds no copy of CIFAR-10"),
])
def test_bad_input_prints_one_error_line(args: list[str], message: str, tmp_path: Path, project_dir: Path, capsys: pytest.CaptureFixture) -> None:
    args = [str(tmp_path) if a == "EMPTY" else a for a in args]
    assert speed.main([*args, "--results-md", str(tmp_path / "RESULTS.md")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err and "Fix: " in err
    assert not (project_dir / "results").exists() and not (tmp_path / "RESULTS.md").exists()


@pytest.mark.parametrize("args", [["--accuracy-epochs", "resnet9:3"], ["--steps", "0"], ["--accuracy-target", "94"]])
def test_malformed_options_are_usage_errors(args: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        speed.main(args)
    assert exc.value.code == 2


def test_time_to_accuracy_keeps_the_full_recipe_whatever_dnic_profile_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DNIC_PROFILE", "quick")
    args = speed.parse_args(["--accuracy-epochs", "resnet9=3"], "cpu")
    [cfg] = speed.accuracy_configs(args, "cpu")
    full = speed.PROFILES["full"]
    assert (cfg.profile, cfg.epochs, cfg.batch_size) == ("full", 3, 512)
    assert (cfg.train_size, cfg.val_size, cfg.test_size, cfg.patience) == (full.train_size, full.val_size, full.test_size, full.patience)


@pytest.mark.parametrize(("args", "message"), [
    (["run", "svhn"], "error: unknown dataset 'svhn'."),
    (["bundle"], "error: bundle needs a dataset."),
    (["deploy"], "error: unknown command 'deploy'."),
    (["run", "mnist", "--speed"], "error: STOP_AFTER_SECONDS must be a whole number of seconds, got '--speed'."),
    (["run", "mnist", "300", "9m"], "error: LIMIT_SECONDS must be a whole number of seconds, got '9m'."),
    (["run", "mnist"], "error: no wheels in .whl/."),
    (["speed"], "error: the speed benchmark needs CIFAR-10 in .data/."),
])
def test_gpu_session_script_names_bad_input_and_the_fix(args: list[str], message: str, tmp_path: Path) -> None:
    done = subprocess.run(["bash", str(REPO_ROOT / "benchmarks" / "gpu_session.sh"), *args], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith(message) and "\nFix: " in done.stderr
    assert list(tmp_path.iterdir()) == []  # nothing installed, copied or packed


def test_the_gpu_session_script_checks_the_code_paths_a_record_names_its_commit_by() -> None:
    line = next(l for l in (REPO_ROOT / "benchmarks" / "gpu_session.sh").read_text().splitlines() if l.startswith("CODE_PATHS=("))
    listed = subprocess.run(["bash", "-c", f'{line.split("#")[0]}; printf "%s\\n" "${{CODE_PATHS[@]}}"'], capture_output=True, text=True).stdout
    assert tuple(listed.splitlines()) == CODE_PATHS


_budget_spec = importlib.util.spec_from_file_location("budget", REPO_ROOT / "benchmarks" / "budget.py")
budget = importlib.util.module_from_spec(_budget_spec)
_budget_spec.loader.exec_module(budget)


def test_budget_plan_takes_the_most_epochs_that_fit_the_hours() -> None:
    sizes = {"a": {"train": 3600, "val": 0, "test": 0}, "b": {"train": 7200, "val": 0, "test": 0}}
    measured = {"a": {"net": {"train": 1.0, "eval": 1e12}}, "b": {"net": {"train": 1.0, "eval": 1e12}}}
    # one epoch: 1 h on a, 2 h on b, plus 30 s of overhead per notebook
    assert budget.notebook_seconds(measured["a"]["net"], sizes["a"], 2) == pytest.approx(7200 + budget.OVERHEAD_S)
    plan = budget.plan(measured, sizes, hours=10)
    assert plan["epochs"] == 3 and plan["fits"] and plan["hours"]["b"] == pytest.approx(6 + budget.OVERHEAD_S / 3600)
    assert budget.plan(measured, sizes, hours=2)["fits"] is False  # not even one epoch fits: said, not hidden


def test_budget_rows_follow_the_header_whatever_order_the_record_keeps(project_dir: Path) -> None:
    sizes = {d: {"train": 3600 * (i + 1), "val": 0, "test": 0} for i, d in enumerate(("mnist", "fashion_mnist", "cifar10"))}
    measured = {d: {a: {"train": (i + 1) * (1.0 if a == "resnet18" else 10.0), "eval": 1e12} for a in ("resnet18", "lenet5")}
                for i, d in enumerate(sizes)}
    plan = budget.plan(measured, sizes, hours=2)
    path = write_record(make_record("benchmark", "bench-budget-cpu-test", "quick", {"amp": "fp32"}, {"speeds": measured, "plan": plan},
                                    device="cpu", data={}, seed=0, wall_time_s=1.0))
    rows = speed.budget_rows(json.loads(path.read_text()))  # as read back: keys sorted, cifar10 first
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert [c[3] for c in cells[:2]] == ["lenet5", "resnet18"]  # the registry's order
    assert [c[4:] for c in cells[:2]] == [[f"{10.0 * k:.1f} / 1,000,000,000,000" for k in (1, 2, 3)], [f"{k:.1f} / 1,000,000,000,000" for k in (1, 2, 3)]]
    assert cells[2][3] == f"**all, 1 epoch(s) each: hours ({sum(plan['hours'].values()):.2f} in all: do not fit 2 h)**"
    assert cells[2][4:] == [f"**{plan['hours'][d]:.2f}**" for d in ("mnist", "fashion_mnist", "cifar10")]  # MNIST first


_recipe_spec = importlib.util.spec_from_file_location("recipe", REPO_ROOT / "benchmarks" / "recipe.py")
recipe = importlib.util.module_from_spec(_recipe_spec)
_recipe_spec.loader.exec_module(recipe)


def test_recipe_variants_are_scored_on_validation_only(fixture_data: Path, project_dir: Path, tmp_path: Path) -> None:
    assert recipe.overrides("lr=0.2, tta=multiview,augment=false") == {"lr": 0.2, "tta": "multiview", "augment": False}
    assert recipe.overrides("") == {}
    with pytest.raises(argparse.ArgumentTypeError, match="not key=value"):
        recipe.overrides("lr")
    splits = recipe.validation_splits(recipe.make_config("lenet5", "mnist", "smoke"), str(fixture_data))
    assert len(splits.test_y) == 0 and len(splits.val_y) > 0  # no variant can see a test image
    md = tmp_path / "RESULTS.md"
    args = ["lenet5", "mnist", "--profile", "smoke", "--data-dir", str(fixture_data), "--results-md", str(md), "--variant", "", "--variant", "tta=off"]
    assert recipe.main(args) == 0
    rec = json.loads((project_dir / "results" / "smoke" / "bench-recipe-mnist-lenet5.json").read_text())
    assert [v["overrides"] for v in rec["metrics"]["variants"]] == [{}, {"tta": "off"}]
    recipe_views, one_view = rec["metrics"]["variants"]  # LeNet-5's recipe averages views; tta=off changes only the scoring
    assert [recipe_views["shared_training"], one_view["shared_training"]] == [False, True] and one_view["history"] == recipe_views["history"]
    assert all(0 <= v["mean"] <= 1 and len(v["val_acc"]) == 1 for v in rec["metrics"]["variants"])
    [history] = rec["metrics"]["variants"][0]["history"]  # one seed: its epochs, validation without TTA
    assert [row["epoch"] for row in history] == list(range(1, len(history) + 1)) and all(0 <= row["val_acc"] <= 1 for row in history)
    table = md.read_text().split("## ")[7]
    assert table.startswith("Recipe variants") and "| lenet5 | the recipe | 1 |" in table and "| lenet5 | tta=off | 1 |" in table
    assert recipe.main([*args[:-2], "--variant", "optimizer=rmsprop"]) == 2  # a bad value: one error line, exit 2
    assert recipe.main([*args[:-4], "--variant", "lr=0.1", "--tag", "lr-0-1"]) == 0  # a tagged run keeps the untagged record
    tagged = json.loads((project_dir / "results" / "smoke" / "bench-recipe-mnist-lenet5-lr-0-1.json").read_text())
    assert [v["overrides"] for v in tagged["metrics"]["variants"]] == [{"lr": 0.1}]
    assert json.loads((project_dir / "results" / "smoke" / "bench-recipe-mnist-lenet5.json").read_text()) == rec
    with pytest.raises(SystemExit):
        recipe.main([*args, "--tag", "../escape"])


_step_spec = importlib.util.spec_from_file_location("step", REPO_ROOT / "benchmarks" / "step.py")
step = importlib.util.module_from_spec(_step_spec)
_step_spec.loader.exec_module(step)


def test_step_variants_change_one_setting_each_and_time_the_baseline_twice() -> None:
    found = step.variants(128, [128, 256], cores=2)
    base = found[0]
    assert [v["name"] for v in found] == ["baseline", "batch 256", "contiguous (NCHW)", "1 thread", "torch.compile", "baseline again"]
    for v in found[1:-1]:  # exactly one setting differs from the baseline's
        assert sum(v[k] != base[k] for k in ("batch_size", "channels_last", "threads", "compile")) == 1, v
    assert {**found[-1], "name": "baseline"} == base
    assert [v["name"] for v in step.variants(64, [], cores=1, compile_too=False)] == ["baseline", "contiguous (NCHW)", "baseline again"]


def test_tiny_step_profile_writes_its_record_and_results(fixture_data: Path, project_dir: Path, tmp_path: Path) -> None:
    md = tmp_path / "RESULTS.md"
    args = ["--arch", "lenet5", "--batch-size", "8", "--batch-sizes", "16", "--steps", "1", "--warmup", "1", "--skip-compile",
            "--data-dir", str(fixture_data), "--results-md", str(md)]
    assert step.main(args) == 0
    [path] = (project_dir / "results").glob("*/bench-step-*.json")
    rec = json.loads(path.read_text())
    variants, operators = rec["metrics"]["lenet5"]["variants"], rec["metrics"]["lenet5"]["operators"]
    assert variants[0]["name"] == "baseline" and variants[0]["batch_size"] == 8 and all(v["images_per_s"] > 0 for v in variants)
    assert 0 < len(operators) <= step.TOP_OPERATORS and sum(op["share"] for op in operators) <= 1 + 1e-9
    assert [op["ms_per_step"] for op in operators] == sorted((op["ms_per_step"] for op in operators), reverse=True)
    _, _, _, _, step_table, operator_table, *_ = md.read_text().split("## ")
    assert "| LeNet-5 | baseline | 8 | channels_last |" in step_table and "**+0.0%**" in step_table
    assert "| LeNet-5 | batch 16 | 16 |" in step_table and operator_table.count("| LeNet-5 |") == len(operators)
    assert step.main([*args[:2], "--batch-size", "100000", *args[4:]]) == 2  # a batch larger than the data: one error line, exit 2
