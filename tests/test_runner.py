"""The report runner: its plan, the guard that keeps higher profiles' notebooks, the CLI, and a real smoke run."""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from dnic_utils import readme, runner
from conftest import REPO_ROOT as REPO
from test_records import train_record
from dnic_utils.config import PROFILES, RunConfig, make_config
from dnic_utils.devices import amp_dtype, amp_label, device_slug
from dnic_utils.settings import project_root
from dnic_utils.data import DATASETS
from dnic_utils.models import REGISTRY


def test_plan_starts_with_the_exploration_and_covers_every_model_and_dataset() -> None:
    items = runner.plan()
    assert items[0].name == "00_data_exploration"
    assert items[0].parameters == {}
    models = [i for i in items if i.source == runner.TEMPLATE]
    assert items[1:1 + len(models)] == models  # the model notebooks come right after the exploration
    # then the studies that read the models' records and checkpoints, and deployment, which exports them
    assert [i.name for i in items[1 + len(models):]] == ["40_transfer_learning", "45_hyperparameters", "50_comparative_analysis", "60_deployment"]
    assert all(i.parameters == {} for i in items[1 + len(models):])
    pairs = [(i.parameters["dataset"], i.parameters["arch"]) for i in models]
    assert sorted(pairs) == sorted((d, a) for d in DATASETS for a in REGISTRY)  # each pair exactly once
    names = [i.name for i in items]
    assert len(set(names)) == len(names)
    numbers = [name.split("_", 1)[0] for name in names[:1 + len(models)]]
    assert numbers == sorted(numbers, key=int) and len(set(numbers)) == len(numbers)
    for item in models:
        d, a = item.parameters["dataset"], item.parameters["arch"]
        assert item.name.endswith(f"_{d}_{a}")
        assert REGISTRY[a].title in item.title and DATASETS[d].title in item.title
    assert all((REPO / i.source).is_file() for i in items)


def write_notebook(path: Path, profile: str | None) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell("# A notebook"))
    if profile:
        nb.metadata["dnic"] = {"profile": profile}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


@pytest.fixture
def item() -> runner.Planned:
    return runner.plan()[1]


def test_output_path_keeps_a_higher_profiles_notebook(tmp_path: Path, item: runner.Planned) -> None:
    committed = tmp_path / "notebooks" / f"{item.name}.ipynb"
    write_notebook(committed, "quick")
    kept = runner.output_path(tmp_path, item, "smoke", force=False)
    assert kept == tmp_path / "build" / "smoke" / "notebooks" / f"{item.name}.ipynb"
    assert runner.output_path(tmp_path, item, "smoke", force=True) == committed
    assert runner.output_path(tmp_path, item, "quick", force=False) == committed  # the same profile replaces it
    assert runner.output_path(tmp_path, item, "full", force=False) == committed  # a higher one too


@pytest.mark.parametrize("existing", [None, "smoke", "no-metadata"])
def test_output_path_replaces_lower_or_unknown_notebooks(tmp_path: Path, item: runner.Planned, existing: str | None) -> None:
    target = tmp_path / "notebooks" / f"{item.name}.ipynb"
    if existing == "no-metadata":
        write_notebook(target, None)
    elif existing:
        write_notebook(target, existing)
    for profile in PROFILES:
        assert runner.output_path(tmp_path, item, profile, force=False) == target


def test_each_fixed_notebooks_own_title_is_the_one_the_plan_gives_it() -> None:
    """The README's notebook index takes the plan's titles: a notebook renamed in its first cell and not in the plan fails here."""
    for item in runner.plan():
        if item.source != runner.TEMPLATE:
            first = nbformat.read(REPO / item.source, as_version=4).cells[0].source.splitlines()[0]
            assert first == item.title, item.name


def test_materialise_fills_in_the_title(tmp_path: Path, item: runner.Planned) -> None:
    source = REPO / runner.TEMPLATE
    (tmp_path / runner.TEMPLATE).parent.mkdir(parents=True)
    (tmp_path / runner.TEMPLATE).write_bytes(source.read_bytes())
    path = runner.materialise(tmp_path, item, "smoke")
    assert path.parent == tmp_path / "build" / "smoke" / "sources"
    template = nbformat.read(source, as_version=4)
    made = nbformat.read(path, as_version=4)
    assert made.cells[0].source.splitlines()[0] == item.title
    assert made.cells[0].source.splitlines()[1:] == template.cells[0].source.splitlines()[1:]
    assert [c.source for c in made.cells[1:]] == [c.source for c in template.cells[1:]]
    exploration = runner.plan()[0]
    assert runner.materialise(tmp_path, exploration, "smoke") == tmp_path / exploration.source


def test_unknown_profile_exits_with_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.delenv("DNIC_PROFILE", raising=False)  # the environment would win over --profile
    assert runner.main(["--profile", "nope"]) == 2
    err = capsys.readouterr().err
    assert "'nope'" in err and "Fix:" in err


def test_list_prints_the_plan(capsys: pytest.CaptureFixture) -> None:
    assert runner.main(["--profile", "smoke", "--list"]) == 0
    assert capsys.readouterr().out.split() == [i.name for i in runner.plan()]
    assert runner.main(["--profile", "smoke", "--list", "--only", "*cifar10*"]) == 0
    listed = capsys.readouterr().out.split()
    assert listed and all("cifar10" in name for name in listed) and len(listed) == len(REGISTRY)
    last = runner.plan()[-1].name
    assert runner.main(["--profile", "smoke", "--list", "--start-at", last]) == 0
    assert capsys.readouterr().out.split() == [last]


def test_bad_selection_exits_with_2(capsys: pytest.CaptureFixture) -> None:
    assert runner.main(["--profile", "smoke", "--only", "no-such-notebook*"]) == 2
    assert "no notebook matches" in capsys.readouterr().out
    assert runner.main(["--profile", "smoke", "--start-at", "999_nothing"]) == 2
    err = capsys.readouterr().err
    assert "999_nothing" in err and "Fix:" in err and "00_data_exploration" in err


def test_a_data_folder_that_does_not_exist_stops_the_batch_before_any_notebook(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert runner.main(["--profile", "smoke", "--only", "00_*", "--data-dir", str(tmp_path / "nope")]) == 2
    captured = capsys.readouterr()
    assert f"error: The data folder {tmp_path / 'nope'} (--data-dir or DNIC_DATA_DIR) does not exist. Fix:" in captured.err
    assert "dnic report" not in captured.out  # no notebook started


OPTIONS = {"only": "*", "start_at": None, "skip_done": False, "stop_after": None}


def test_timing_record_merges_the_notebooks_of_successive_calls(project_dir: Path) -> None:
    first = runner.timing_record("full", "cpu", {"101_a": 10.0, "102_b": 20.0}, [], 31.0, OPTIONS)
    runner.write_record(first)
    second = runner.timing_record("full", "cpu", {"102_b": 25.0, "103_c": 5.0}, ["104_d: boom"], 31.0, OPTIONS)
    assert second["name"].startswith("report-run-cpu-") and second["failures"] == ["104_d: boom"]
    notebooks = second["metrics"]["notebooks"]
    assert {k: v["seconds"] for k, v in notebooks.items()} == {"101_a": 10.0, "102_b": 25.0, "103_c": 5.0}
    assert notebooks["101_a"]["date"] == first["created"] and notebooks["103_c"]["date"] == second["created"]
    assert second["metrics"]["total_s"] == 40.0
    ended = runner.timing_record("full", "cpu", {"101_a": 10.0, "102_b": 20.0}, [], 31.0, OPTIONS, finished={"101_a": "2026-01-01T10:00:00+00:00"})
    assert ended["metrics"]["notebooks"]["101_a"]["date"] == "2026-01-01T10:00:00+00:00"  # when it ended, not when the call last wrote
    other = runner.timing_record("smoke", "cpu", {"101_a": 1.0}, [], 1.0, OPTIONS)  # another profile starts afresh
    assert other["metrics"]["total_s"] == 1.0
    assert "No timed report runs" in readme.runtime_table([], planned=40)


def test_the_whole_report_time_comes_from_one_call_that_ran_every_notebook(project_dir: Path) -> None:
    every = {i.name: 1.0 for i in runner.plan()}
    partial = runner.timing_record("full", "cpu", {"101_a": 10.0}, [], 12.0, OPTIONS)
    assert "whole_report" not in partial["metrics"]
    failed = runner.timing_record("full", "cpu", every, ["104_d: boom"], 60.0, OPTIONS)
    assert "whole_report" not in failed["metrics"]  # a call with a failure has not run the report
    whole = runner.timing_record("full", "cpu", every, [], 90.0, {**OPTIONS, "jobs": 2})
    assert whole["metrics"]["whole_report"] == {"wall_time_s": 90.0, "date": whole["created"], "git_commit": whole["git_commit"], "jobs": 2,
                                                "notebooks": len(every), "seed_runs": 0, "seeds_s": 0.0}
    runner.write_record(whole)
    later = runner.timing_record("full", "cpu", {"101_a": 3.0}, [], 5.0, OPTIONS)  # a later partial call keeps it
    assert later["metrics"]["whole_report"] == whole["metrics"]["whole_report"]
    row = readme.runtime_table([later], planned=len(every)).splitlines()[2]
    assert row.endswith(f"| 0.1 | **1.5** ({whole['created'][:10]}, 2 at a time) |")
    assert readme.runtime_table([partial], planned=len(every)).splitlines()[2].endswith("| 0.2 | — |")
    seeded = runner.timing_record("full", "cpu", every, [], 600.0, OPTIONS, seed_seconds=[120.0, 180.0])  # the seeds' time is inside, and said
    assert seeded["metrics"]["whole_report"]["seed_runs"] == 2 and seeded["metrics"]["whole_report"]["seeds_s"] == 300.0
    text = readme.whole_report_text(seeded["metrics"]["whole_report"], planned=len(every) + 1)
    assert text == f"**10.0** ({seeded['created'][:10]}, 1 at a time, 2 extra seed runs included, 5.0 min, {len(every)} notebooks, {len(every) + 1} planned now)"


def test_the_notebook_index_gives_each_committed_notebook_its_profile_and_latest_time_there(project_dir: Path) -> None:
    quick = runner.timing_record("quick", "cpu", {"101_a": 10.0, "102_b": 20.0}, [], 31.0, OPTIONS)
    budget = runner.timing_record("budget", "cpu", {"101_a": 400.0}, [], 400.0, OPTIONS)
    older = {**budget, "metrics": {"notebooks": {"101_a": {**budget["metrics"]["notebooks"]["101_a"], "seconds": 9.0, "date": "2000-01-01T00:00:00+00:00"}}},
             "device": {"type": "cuda", "name": "GPU", "count": 1}}  # another device's earlier run of the same notebook
    ended = budget["created"]  # the committed notebooks' papermill end time, here that of the latest runs
    entries = [("101_a", "A", "budget", ended), ("102_b", "B", "quick", None), ("103_c", "C", None, None), ("101_a", "A'", "budget", "1999-01-01T00:00:00+00:00")]
    rows = readme.notebook_index(entries, [older, quick, budget]).splitlines()
    precision = amp_label(amp_dtype("auto", "cpu"))
    assert rows[0] == "| notebook | what | committed run: profile | its wall time | its code (commit) | Colab |"
    commit = budget["metrics"]["notebooks"]["101_a"]["git_commit"]
    assert rows[2].startswith(f"| [`101_a`](notebooks/101_a.ipynb) | A | `budget` | 400 s, CPU (")
    assert f", {precision} | `{commit[:7]}`{'-dirty' if commit.endswith('-dirty') else ''} | [![Open in Colab]" in rows[2]
    assert "| `quick` | 20 s, CPU (" in rows[3]  # the committed run's profile, not the other profile's time
    assert "| C | — | — | — | [![Open in Colab]" in rows[4]
    assert "| A' | `budget` | 9 s, GPU, " in rows[5]  # a notebook that ended long ago: the first time recorded after it, the other device's
    for odd in ("not a time", "2026-12-01T07:00:00"):  # unreadable, or naive (taken as UTC): no crash
        assert readme.committed_time([budget["metrics"]["notebooks"]["101_a"]], odd)["seconds"] == 400.0
    assert readme.committed_time([{"date": "garbled", "seconds": 1.0}], ended) is None  # a run whose date is unreadable never matches
    side = runner.timing_record("quick", "cpu", {"102_b": 20.0, "50_d": 9.0}, [], 31.0, {**OPTIONS, "jobs": 2}, alone=["50_d"])
    rows = readme.notebook_index([("102_b", "B", "quick", None), ("50_d", "D", "quick", None)], [side]).splitlines()
    assert "| `quick` | 20 s (2 at a time), CPU (" in rows[2] and "| `quick` | 9 s, CPU (" in rows[3]  # 50 ran alone in a --jobs 2 call


@pytest.mark.parametrize("content", [None, "", "not json", "[]", "{}"])
def test_an_unreadable_notebook_has_no_profile_rather_than_a_crash(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "x.ipynb"
    if content is not None:
        path.write_text(content)
    assert runner.notebook_metadata(path) == {} and runner.notebook_profile(path) is None


def test_timing_records_are_kept_apart_by_device_and_precision(project_dir: Path) -> None:
    """report-run-<device>-<precision>: a record named by the device alone (committed before) is shown, with '?', not merged into."""
    precision = amp_label(amp_dtype("auto", "cpu"))
    legacy = runner.timing_record("full", "cpu", {"101_a": 10.0}, [], 10.0, OPTIONS)
    legacy["name"] = f"report-run-{device_slug('cpu')}"
    del legacy["precision"]
    runner.write_record(legacy)
    record = runner.timing_record("full", "cpu", {"102_b": 25.0}, [], 25.0, OPTIONS)
    assert record["name"] == f"report-run-{device_slug('cpu', precision)}" and re.search(rf"-\d+-threads?-{precision}$", record["name"])
    assert record["precision"] == precision and set(record["metrics"]["notebooks"]) == {"102_b"}  # nothing derived from the old record

    gpu = {"type": "cuda", "name": "NVIDIA H100 80GB HBM3", "count": 1}
    other = runner.timing_record("smoke", "cpu", {"101_a": 1.0}, [], 1.0, OPTIONS)
    table = readme.runtime_table([{**legacy, "device": gpu}, {**record, "device": gpu, "precision": "bfloat16"},
                                  {**other, "device": {"type": "cpu", "name": "AMD EPYC", "threads": 2}}], planned=40)
    assert table.splitlines()[0].startswith("| profile | device | precision | notebooks timed |")
    smoke_row, legacy_row, full_row = table.splitlines()[2:5]
    assert smoke_row.startswith(f"| `smoke` | CPU (AMD EPYC, 2 threads) | {precision} | 1 of 40 |")
    assert smoke_row.endswith(" | 1 | 0.0 | — |")  # one notebook at a time; the call's own wall time (1 s); no call ran every notebook
    assert legacy_row.startswith("| `full` | NVIDIA H100 80GB HBM3 | ? | 1 of 40 | 0.2 | `101_a` (10 s) |")
    assert full_row.startswith("| `full` | NVIDIA H100 80GB HBM3 | bfloat16 | 1 of 40 | 0.4 | `102_b` (25 s) |")


@pytest.fixture
def fake_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[str]]:
    """A project of three planned notebooks whose execution only writes an executed notebook (no papermill), after 0.6 s."""
    monkeypatch.setenv("DNIC_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("DNIC_PROFILE", "smoke")
    monkeypatch.setenv("DNIC_QUIET", "1")
    items = [runner.Planned(f"10{n}_mnist_lenet5", runner.TEMPLATE, {"arch": "lenet5", "dataset": "mnist"}, "# t") for n in range(3)]
    ran: list[str] = []

    def execute(root: Path, item: runner.Planned, profile: str, out: Path, timeout: int) -> None:
        time.sleep(0.6)
        write_notebook(out, profile)
        ran.append(item.name)

    monkeypatch.setattr(runner, "plan", lambda: items)
    monkeypatch.setattr(runner, "execute", execute)
    monkeypatch.setattr(runner, "regenerate_readme", lambda root: None)
    return tmp_path, ran


def write_run_record(cfg: RunConfig, **changes: object) -> None:
    """A record of cfg's run whose config holds cfg's values, with `changes` applied (a run trained otherwise)."""
    runner.write_record({**train_record(cfg.dataset, cfg.arch, cfg.profile), "name": cfg.run_name, "seed": cfg.seed,
                         "config": {**cfg.to_dict(), **changes}})


def test_skip_done_resumes_where_an_earlier_call_stopped(fake_batch: tuple[Path, list[str]], capsys: pytest.CaptureFixture) -> None:
    root, ran = fake_batch
    write_notebook(root / "notebooks" / "100_mnist_lenet5.ipynb", "smoke")  # done in this profile, with its run's record
    write_run_record(make_config("lenet5", "mnist", "smoke"))
    write_notebook(root / "notebooks" / "101_mnist_lenet5.ipynb", "quick")  # another profile's: not done for smoke
    assert runner.main(["--profile", "smoke", "--jobs", "1", "--skip-done", "--force"]) == 0
    assert ran == ["101_mnist_lenet5", "102_mnist_lenet5"]
    assert "100_mnist_lenet5: done in this profile, skipped" in capsys.readouterr().out


def test_skip_done_reruns_a_model_notebook_whose_record_the_profile_now_trains_otherwise(fake_batch: tuple[Path, list[str]]) -> None:
    root, ran = fake_batch
    cfg = make_config("lenet5", "mnist", "smoke")
    write_notebook(root / "notebooks" / "100_mnist_lenet5.ipynb", "smoke")
    write_run_record(cfg, epochs=cfg.epochs + 1)  # made before the profile's epochs changed: the same run name, other epochs
    item = runner.plan()[0]
    assert not runner.notebook_done(item, root / "notebooks" / "100_mnist_lenet5.ipynb", "smoke")
    write_run_record(cfg, optimizer="adamw")  # or before the architecture's recipe changed (a recipe of its own keeps the name)
    assert not runner.notebook_done(item, root / "notebooks" / "100_mnist_lenet5.ipynb", "smoke")
    write_run_record(cfg, device="cuda", compile=True)  # where and how it ran do not matter
    assert runner.notebook_done(item, root / "notebooks" / "100_mnist_lenet5.ipynb", "smoke")
    (root / "results" / "smoke" / f"{cfg.run_name}.json").unlink()  # a notebook without its record is not done
    assert runner.main(["--profile", "smoke", "--jobs", "1", "--skip-done", "--force"]) == 0
    assert ran == ["100_mnist_lenet5", "101_mnist_lenet5", "102_mnist_lenet5"]


def test_stop_after_starts_no_notebook_past_the_limit(fake_batch: tuple[Path, list[str]], capsys: pytest.CaptureFixture) -> None:
    root, ran = fake_batch
    assert runner.main(["--profile", "smoke", "--jobs", "1", "--stop-after", "1"]) == 0
    assert ran == ["100_mnist_lenet5", "101_mnist_lenet5"]  # the second starts at 0.6 s, the third would start at 1.2 s
    assert "stopping: 1 s have passed (--stop-after); resume with --start-at 102_mnist_lenet5" in capsys.readouterr().out
    [record] = [json.loads(p.read_text()) for p in (root / "results" / "smoke").glob("report-run-cpu-*.json")]
    assert set(record["metrics"]["notebooks"]) == set(ran) and record["config"]["stop_after"] == 1


class CellError(Exception):
    """Like papermill's PapermillExecutionError: the failing cell's number, the error's type and message."""

    def __init__(self, exec_count: int, ename: str, evalue: str) -> None:
        super().__init__(evalue)
        self.exec_count, self.ename, self.evalue = exec_count, ename, evalue


def test_a_run_in_which_nothing_succeeds_changes_no_committed_file(fake_batch: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture) -> None:
    """Every notebook failing at once leaves the committed timing record (and its 'last run' date) and README.md as they were."""
    root, _ = fake_batch
    committed = runner.timing_record("smoke", "cpu", {"100_mnist_lenet5": 5.0}, [], 5.0, OPTIONS)
    path = runner.write_record(committed)
    before = path.read_bytes()
    regenerated: list[Path] = []
    monkeypatch.setattr(runner, "regenerate_readme", regenerated.append)

    def fail(root: Path, item: runner.Planned, profile: str, out: Path, timeout: int) -> None:
        raise FileNotFoundError(f"No such file or directory: '{root / runner.TEMPLATE}'")

    monkeypatch.setattr(runner, "execute", fail)
    assert runner.main(["--profile", "smoke", "--jobs", "1"]) == 1
    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == [path.name]
    assert regenerated == []
    assert "no notebook executed successfully in this call: README.md and the timing record left as they were; 0 ok, 3 failed" in capsys.readouterr().out


def test_failures_in_the_timing_record_name_notebook_cell_and_error_without_machine_paths(fake_batch: tuple[Path, list[str]],
                                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    root, _ = fake_batch
    succeed = runner.execute

    def execute(root: Path, item: runner.Planned, profile: str, out: Path, timeout: int) -> None:
        if item.name == "100_mnist_lenet5":
            raise FileNotFoundError(f"[Errno 2] No such file or directory: '{root / runner.TEMPLATE}' (from /opt/conda/lib/site-packages/pm.py:12)")
        if item.name == "101_mnist_lenet5":
            raise CellError(4, "OSError", f"cannot read {root.resolve()}/data/MNIST and /home/someone/.cache/dnic/x.npz; cwd {root}; see https://x.org/a/b")
        succeed(root, item, profile, out, timeout)

    monkeypatch.setattr(runner, "execute", execute)
    assert runner.main(["--profile", "smoke", "--jobs", "1"]) == 1
    [record] = [json.loads(p.read_text()) for p in (root / "results" / "smoke").glob("report-run-*.json")]
    assert set(record["metrics"]["notebooks"]) == {"102_mnist_lenet5"}
    assert record["failures"] == [
        "100_mnist_lenet5: FileNotFoundError: [Errno 2] No such file or directory: './notebooks/templates/model.ipynb' (from pm.py:12)",
        "101_mnist_lenet5 (cell [4]): OSError: cannot read ./data/MNIST and x.npz; cwd .; see https://x.org/a/b",
    ]


def test_the_runner_prints_the_readme_rows_a_batch_replaced(fake_batch: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture) -> None:
    """A same-profile run on another machine replaces a README row: the runner says which, with old and new device, precision and date."""
    root, _ = fake_batch
    xeon = {"type": "cpu", "name": "Intel Xeon", "threads": 2}
    runner.write_record({**train_record("mnist", "lenet5", created="2026-11-20T09:00:00+00:00"), "device": xeon})
    runner.write_record({**train_record("mnist", "vgg16", created="2026-11-20T09:00:00+00:00"), "device": xeon})  # not rerun
    succeed = runner.execute

    def execute(root: Path, item: runner.Planned, profile: str, out: Path, timeout: int) -> None:
        if item.name == "100_mnist_lenet5":  # what the notebook writes on this other machine
            record = train_record("mnist", "lenet5", created="2026-11-30T09:00:00+00:00")
            runner.write_record({**record, "device": {"type": "cpu", "name": "AMD EPYC", "threads": 2}, "metrics": {**record["metrics"], "amp": "bfloat16"}})
        succeed(root, item, profile, out, timeout)

    monkeypatch.setattr(runner, "execute", execute)
    assert runner.main(["--profile", "smoke", "--jobs", "1"]) == 0
    replaced = [line for line in capsys.readouterr().out.splitlines() if line.startswith("replaced README row")]
    assert replaced == ["replaced README row MNIST · LeNet-5 · smoke: CPU (Intel Xeon, 2 threads) fp32 2026-11-20 → CPU (AMD EPYC, 2 threads) bfloat16 2026-11-30"]


def readme_section(root: Path, name: str) -> str:
    """The text between a README's generated-section markers."""
    return (root / "README.md").read_text().split(f"<!-- dnic:{name}:start -->")[1].split(f"<!-- dnic:{name}:end -->")[0]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# The exploration and the first model notebook of each dataset: with DNIC_DATA_DIR set (as in CI), nbval already executes
# every committed notebook in the smoke profile, so running all of them twice would double CI time without testing anything new.
SAMPLE = "*0[01]_*"


@pytest.mark.report
def test_the_runner_regenerates_notebooks_records_and_readme_in_smoke(data_root: Path, uses_fixture_data: bool, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """The real thing: papermill executes notebooks of the plan in the smoke profile, in a copy of the project."""
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    shutil.copytree(REPO / "notebooks", project / "notebooks", dirs_exist_ok=True, ignore=shutil.ignore_patterns(".*"))
    shutil.copy2(REPO / "README.md", project / "README.md")
    monkeypatch.setenv("DNIC_PROJECT_DIR", str(project))  # the copy: the repository's README and notebooks stay as they are
    # main() exports these into os.environ for its kernels; setting them here first lets monkeypatch restore them
    monkeypatch.setenv("DNIC_PROFILE", "smoke")
    monkeypatch.setenv("DNIC_QUIET", "1")
    monkeypatch.setenv("DNIC_DATA_DIR", str(data_root))
    if uses_fixture_data:
        monkeypatch.setenv("DNIC_CACHE_DIR", str(tmp_path / "cache"))
    root = project_root()
    items = [i for i in runner.plan() if fnmatch.fnmatch(i.name, SAMPLE)]
    assert [i.name.split("_")[0] for i in items] == ["00", "101", "201", "301"]
    expected = {i.name: runner.output_path(root, i, "smoke", force=False) for i in items}
    higher = {p: sha(p) for p in (root / "notebooks").glob("*.ipynb")
              if runner.notebook_profile(p) in PROFILES and PROFILES[runner.notebook_profile(p)].rank > PROFILES["smoke"].rank}
    start = time.time()

    code = runner.main(["--profile", "smoke", "--only", SAMPLE, "--data-dir", str(data_root), "--jobs", "2"])  # two worker processes

    out = capsys.readouterr()
    assert code == 0, f"the smoke report failed:\n{out.out}\n{out.err}"
    for name, path in expected.items():
        candidates = [root / "notebooks" / f"{name}.ipynb", root / "build" / "smoke" / "notebooks" / f"{name}.ipynb"]
        assert path in candidates and path.is_file(), name
        assert path.stat().st_mtime >= start - 1, f"{path} was not written by this run"
        nb = nbformat.read(path, as_version=4)
        assert nb.metadata["dnic"]["profile"] == "smoke"
        assert not Path(nb.metadata["papermill"]["input_path"]).is_absolute()
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
        assert not errors, f"{name} has error outputs"
    for path, digest in higher.items():  # a higher profile's committed notebook is never replaced by smoke
        assert sha(path) == digest, path
    [record] = [json.loads(p.read_text()) for p in (root / "results" / "smoke").glob("report-run-cpu-*.json")]
    assert record["failures"] == [] and set(record["metrics"]["notebooks"]) == set(expected) and record["config"]["jobs"] == 2
    assert "| `smoke` | CPU" in readme_section(root, "runtimes")
    for item in items[1:]:
        run_record = json.loads((root / "results" / "smoke" / f"{item.parameters['dataset']}-{item.parameters['arch']}.json").read_text())
        assert run_record["created"] >= time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(start - 1))
        assert (data_root / run_record["data"]["path"]).is_dir() and not Path(run_record["data"]["path"]).is_absolute()
    readme = (root / "README.md").read_text()
    for item in runner.plan():  # the notebook index lists the whole plan, run or not
        assert f"(notebooks/{item.name}.ipynb)" in readme, item.name
    section = readme.split("<!-- dnic:results:start -->")[1].split("<!-- dnic:results:end -->")[0]
    tables = section.split("#### ")[1:]  # one results table per dataset, each with a LeNet-5 row (this run's or a higher profile's)
    assert len(tables) == len(DATASETS)
    for info, table in zip(DATASETS.values(), tables):
        assert table.startswith(info.title) and "| LeNet-5 " in table


def test_a_failing_notebook_is_reported_with_its_cell_and_the_run_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                           capsys: pytest.CaptureFixture) -> None:
    """A notebook whose parameters are bad fails at the config cell; the runner names it, keeps going and exits 1."""
    project = tmp_path / "project"
    shutil.copytree(REPO / "notebooks" / "templates", project / "notebooks" / "templates")
    shutil.copy2(REPO / "README.md", project / "README.md")
    monkeypatch.setenv("DNIC_PROJECT_DIR", str(project))
    monkeypatch.setenv("DNIC_PROFILE", "smoke")
    monkeypatch.setenv("DNIC_QUIET", "1")
    bad = runner.Planned("199_mnist_nope", runner.TEMPLATE, {"arch": "nope", "dataset": "mnist"}, "# 199 · nope on MNIST")
    monkeypatch.setattr(runner, "plan", lambda: [bad])

    code = runner.main(["--profile", "smoke", "--jobs", "1"])

    err = capsys.readouterr().err
    assert code == 1
    assert "FAILED 199_mnist_nope (cell [" in err and "DnicError: Unknown architecture 'nope'" in err and "Fix:" in err
    assert (project / "build" / "smoke" / "failed" / "199_mnist_nope.ipynb").is_file()  # kept for inspection
    assert not (project / "notebooks" / "199_mnist_nope.ipynb").exists()  # a failed run never lands in notebooks/


def test_tables_only_rewrites_the_readme_sections_without_running_notebooks(project_dir: Path) -> None:
    """--tables-only regenerates every generated README section from the records and executes nothing."""
    shutil.copy2(REPO / "README.md", project_dir / "README.md")
    readme = project_dir / "README.md"
    text = readme.read_text()
    start, end = "<!-- dnic:architectures:start -->", "<!-- dnic:architectures:end -->"
    readme.write_text(text.split(start)[0] + start + "\nstale\n" + end + text.split(end)[1])
    assert runner.main(["--tables-only"]) == 0
    regenerated = readme.read_text()
    assert "stale" not in regenerated and "| `resnet101` | ResNet101 |" in regenerated
    assert "_No run records yet" in regenerated  # this scratch project has no results/
    assert not (project_dir / "build").exists() and not (project_dir / "results").exists()


def test_tables_only_names_the_records_it_could_not_read(project_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """A corrupt record is named, relative to the project, on stderr and in the README's results section, instead of vanishing."""
    shutil.copy2(REPO / "README.md", project_dir / "README.md")
    monkeypatch.setattr(runner, "architecture_table", lambda: "ARCHITECTURES\n")  # model costs take long and are not what is tested
    runner.write_record(train_record("mnist", "lenet5", profile="quick"))
    (project_dir / "results" / "quick" / "mnist-vgg16.json").write_text('{"kind": "train", "name": "mnist-vgg16", ')
    assert runner.main(["--tables-only"]) == 0
    section = readme_section(project_dir, "results")
    assert "| LeNet-5 " in section
    assert "_Not shown: results/quick/mnist-vgg16.json (unreadable: Expecting property name enclosed in double quotes" in section
    assert str(project_dir) not in (project_dir / "README.md").read_text()
    assert "results/quick/mnist-vgg16.json (unreadable: " in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------------------
# Extra seeds (--seeds): records of their own, trained after the model notebooks, without notebooks


def test_seed_list_parses_comma_separated_seeds() -> None:
    assert runner.seed_list("0,1,2") == (0, 1, 2)
    assert runner.seed_list("2, 1,2") == (2, 1)  # repeats dropped, order kept
    for bad in ("a,b", "1;2", "-1", ""):
        with pytest.raises(argparse.ArgumentTypeError, match="seeds"):
            runner.seed_list(bad)


def model_items(*pairs: tuple[str, str]) -> list[runner.Planned]:
    """Model notebooks of the template for (dataset, arch) pairs."""
    return [runner.Planned(f"{n}_{d}_{a}", runner.TEMPLATE, {"arch": a, "dataset": d}, "# t") for n, (d, a) in enumerate(pairs, start=101)]


def test_explicit_seeds_go_to_every_selected_model_and_never_repeat_seed_0() -> None:
    items = [runner.plan()[0], *model_items(("mnist", "lenet5"), ("cifar10", "vgg19"))]
    runs = runner.seed_runs(items, "smoke", (0, 1, 2))
    assert [(i.parameters["arch"], s) for i, s in runs] == [("lenet5", 1), ("lenet5", 2), ("vgg19", 1), ("vgg19", 2)]
    assert runner.seed_runs(items, "smoke", (0,)) == []  # --seeds 0: nothing extra
    assert runner.seed_runs(items, "quick", None) == []  # by default only the published profile gets seeds


def test_the_published_profile_seeds_the_short_runs_and_resnet18_and_vgg16_on_cifar10(project_dir: Path) -> None:
    for dataset, arch, seconds, wait in (("mnist", "lenet5", 60.0, None), ("mnist", "vgg16", 15 * 60.0, 0.0), ("mnist", "resnet101", 15 * 60.0 + 1, 0.0),
                                         ("cifar10", "vgg16", 5 * 3600.0, 0.0), ("mnist", "resnet9", 20 * 60.0, 0.5), ("mnist", "resnet50", 20 * 60.0, 0.1)):
        record = train_record(dataset, arch, profile=runner.PUBLISHED)
        record["metrics"].update(train_time_s=seconds, train_cpu_wait=wait)
        runner.write_record({**record, "wall_time_s": seconds + 120.0})  # the rule times the training, not the notebook's evaluation around it
    items = model_items(("mnist", "lenet5"), ("mnist", "vgg16"), ("mnist", "resnet101"), ("mnist", "resnet18"), ("mnist", "resnet9"),
                        ("mnist", "resnet50"), ("cifar10", "vgg16"), ("cifar10", "resnet18"), ("cifar10", "vgg19"))
    runs = runner.seed_runs(items, runner.PUBLISHED, None)
    chosen = sorted({(i.parameters["dataset"], i.parameters["arch"]) for i, _ in runs})
    # ≤ 15 min of training: LeNet-5 and VGG16 on MNIST, and ResNet-9, whose 20 min include 10 min waiting for a core; ResNet101 is over,
    # and ResNet50 too after its 2 min of waiting; MNIST ResNet18 and CIFAR-10 VGG19 have no run to time; ResNet18 and VGG16 on CIFAR-10 always
    assert chosen == [("cifar10", "resnet18"), ("cifar10", "vgg16"), ("mnist", "lenet5"), ("mnist", "resnet9"), ("mnist", "vgg16")]
    assert sorted({s for _, s in runs}) == [s for s in runner.PUBLISHED_SEEDS if s != 0]
    explicit = runner.seed_runs(items, runner.PUBLISHED, (0, 5))  # an explicit --seeds overrides the rule
    assert len(explicit) == len(items) and {s for _, s in explicit} == {5}


def test_run_seed_trains_the_seed_as_its_own_run_and_skip_done_skips_it(project_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dnic_utils.experiment

    trained: list = []
    monkeypatch.setattr(dnic_utils.experiment, "run", lambda cfg, data_dir=None: trained.append(cfg))
    [item] = model_items(("mnist", "lenet5"))
    assert runner.run_seed(item, 1, "smoke", skip_done=True).endswith("written")
    [cfg] = trained
    assert (cfg.arch, cfg.dataset, cfg.profile, cfg.seed) == ("lenet5", "mnist", "smoke", 1)
    assert cfg.run_name.startswith("mnist-lenet5-") and cfg.run_name != make_config("lenet5", "mnist", "smoke").run_name  # a record of its own
    write_run_record(cfg, epochs=cfg.epochs + 1)  # trained as the profile no longer trains it: trained again
    assert runner.run_seed(item, 1, "smoke", skip_done=True).endswith("written") and len(trained) == 2
    write_run_record(cfg)
    assert runner.run_seed(item, 1, "smoke", skip_done=True).endswith("skipped (--skip-done)") and len(trained) == 2
    runner.run_seed(item, 1, "smoke", skip_done=False)
    assert len(trained) == 3


@pytest.fixture
def seeded_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A project of two model notebooks and a comparison notebook after them; notebooks and seed runs only log what they would do."""
    monkeypatch.setenv("DNIC_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("DNIC_PROFILE", "smoke")
    monkeypatch.setenv("DNIC_QUIET", "1")
    items = [*model_items(("mnist", "lenet5"), ("mnist", "vgg16")), runner.Planned("50_compare", Path("notebooks/50.ipynb"), {}, "# 50")]
    ran: list[str] = []

    def execute(root: Path, item: runner.Planned, profile: str, out: Path, timeout: int) -> None:
        write_notebook(out, profile)
        ran.append(item.name)

    def run_seed(item: runner.Planned, seed: int, profile: str, skip_done: bool) -> str:
        ran.append(f"{item.name} seed {seed}")
        time.sleep(0.4)
        return "record written"

    monkeypatch.setattr(runner, "plan", lambda: items)
    monkeypatch.setattr(runner, "execute", execute)
    monkeypatch.setattr(runner, "run_seed", run_seed)
    monkeypatch.setattr(runner, "regenerate_readme", lambda root: None)
    return ran


def test_seeds_run_after_the_model_notebooks_and_before_the_comparison(seeded_batch: list[str]) -> None:
    assert runner.main(["--profile", "smoke", "--jobs", "1", "--seeds", "0,1,2"]) == 0
    assert seeded_batch == ["101_mnist_lenet5", "102_mnist_vgg16", "101_mnist_lenet5 seed 1", "101_mnist_lenet5 seed 2",
                            "102_mnist_vgg16 seed 1", "102_mnist_vgg16 seed 2", "50_compare"]


def test_batch_order_places_the_seed_step_after_the_last_model_and_omits_it_without_models() -> None:
    items = runner.plan()
    order = runner.batch_order(items)
    step = order.index(None)
    assert order[step - 1].source == runner.TEMPLATE and all(i.source != runner.TEMPLATE for i in order[step + 1:])
    assert [i for i in order if i is not None] == items
    studies = [i for i in items if i.source != runner.TEMPLATE]
    assert runner.batch_order(studies) == studies


def test_jobs_run_the_model_notebooks_side_by_side_then_the_seeds_then_the_rest_in_order(seeded_batch: list[str],
                                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[float] = []
    plain = runner.execute

    def slow(*args: object) -> None:
        started.append(time.perf_counter())
        time.sleep(0.5)
        plain(*args)

    monkeypatch.setattr(runner, "execute", slow)
    # threads stand in for the worker processes, which would not see the fakes above
    monkeypatch.setattr(runner, "ProcessPoolExecutor", lambda jobs, mp_context, initializer, initargs: ThreadPoolExecutor(jobs))
    assert runner.main(["--profile", "smoke", "--seeds", "0,1", "--jobs", "2"]) == 0
    assert sorted(seeded_batch[:2]) == ["101_mnist_lenet5", "102_mnist_vgg16"] and abs(started[1] - started[0]) < 0.4  # together
    assert seeded_batch[2:] == ["101_mnist_lenet5 seed 1", "102_mnist_vgg16 seed 1", "50_compare"]


def test_jobs_default_to_two_in_the_demonstration_profiles_and_one_where_times_are_report_numbers() -> None:
    assert [runner.resolve_jobs("auto", p) for p in ("smoke", "quick", "budget", "full")] == [2, 2, 1, 1]
    assert runner.resolve_jobs(3, "budget") == 3
    with pytest.raises(argparse.ArgumentTypeError, match="whole number"):
        runner.jobs_arg("two")


@pytest.mark.parametrize(("profile", "given", "expected"), [("smoke", None, runner.DEMO_TIMEOUT), ("budget", None, None), ("budget", "60", 60)])
def test_cells_time_out_in_the_demonstration_profiles_only_unless_told(fake_batch: tuple[Path, list[str]], monkeypatch: pytest.MonkeyPatch,
                                                                       profile: str, given: str | None, expected: int | None) -> None:
    monkeypatch.delenv("DNIC_PROFILE", raising=False)  # the fixture's smoke would win over --profile
    seen = []
    monkeypatch.setattr(runner, "execute_timed", lambda root, item, prof, out, timeout, deadline, label: seen.append(timeout) or 0.1)
    monkeypatch.setattr(runner, "write_record", lambda record: None)
    assert runner.main(["--profile", profile, "--jobs", "1", "--force", *(["--timeout", given] if given else [])]) == 0
    assert seen and set(seen) == {expected}


def test_jobs_share_the_cores_between_the_workers_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 8)
    runner.share_cores(2)
    assert runner.os.environ["OMP_NUM_THREADS"] == "4"
    runner.share_cores(16)  # a value already set (by the user, or here) is kept
    assert runner.os.environ["OMP_NUM_THREADS"] == "4"


def test_seeds_respect_only_and_make_nothing_extra_by_default(seeded_batch: list[str]) -> None:
    assert runner.main(["--profile", "smoke", "--jobs", "1", "--seeds", "0,3", "--only", "*vgg16"]) == 0
    assert seeded_batch == ["102_mnist_vgg16", "102_mnist_vgg16 seed 3"]
    seeded_batch.clear()
    assert runner.main(["--profile", "smoke", "--jobs", "1"]) == 0  # not the published profile: no seeds unless asked
    assert seeded_batch == ["101_mnist_lenet5", "102_mnist_vgg16", "50_compare"]
    seeded_batch.clear()
    assert runner.main(["--profile", "smoke", "--jobs", "1", "--seeds", "1", "--only", "50_*"]) == 0  # no model selected: no seed to run
    assert seeded_batch == ["50_compare"]


def test_stop_after_stops_the_seeds_too(seeded_batch: list[str], capsys: pytest.CaptureFixture) -> None:
    assert runner.main(["--profile", "smoke", "--jobs", "1", "--seeds", "0,1,2", "--stop-after", "1"]) == 0
    assert seeded_batch[:2] == ["101_mnist_lenet5", "102_mnist_vgg16"] and "50_compare" not in seeded_batch
    assert 1 <= len(seeded_batch) - 2 < 4  # seeds 0.4 s each: the limit falls among them
    out = capsys.readouterr().out
    assert "stopping: 1 s have passed (--stop-after); resume with --skip-done" in out
    assert f"README tables regenerated; 2 ok, {len(seeded_batch) - 2} extra seed run(s), 0 failed" in out


def test_a_failed_seed_is_reported_and_the_batch_goes_on(seeded_batch: list[str], monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    def run_seed(item: runner.Planned, seed: int, profile: str, skip_done: bool) -> str:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(runner, "run_seed", run_seed)
    assert runner.main(["--profile", "smoke", "--jobs", "1", "--seeds", "1", "--only", "*lenet5"]) == 1
    assert "FAILED 101_mnist_lenet5 seed 1: RuntimeError: out of memory" in capsys.readouterr().err


def test_bad_seeds_exit_with_2(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        runner.main(["--profile", "smoke", "--seeds", "one"])
    assert exit_info.value.code == 2 and "seeds" in capsys.readouterr().err


def test_nbval_on_notebooks_alone_stops_with_the_fix() -> None:
    """Without tests/conftest.py the kernels would retrain in the notebook's profile and write into results/."""
    alone = subprocess.run([sys.executable, "-m", "pytest", "-n", "0", "-p", "no:cacheprovider", "--collect-only", "-q",
                            "notebooks/101_mnist_lenet5.ipynb"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert alone.returncode == pytest.ExitCode.USAGE_ERROR
    assert "would retrain in the notebooks' own profile" in alone.stderr and "tests/conftest.py notebooks/" in alone.stderr
    paired = subprocess.run([sys.executable, "-m", "pytest", "-n", "0", "-p", "no:cacheprovider", "--collect-only", "-q",
                             "tests/conftest.py", "notebooks/101_mnist_lenet5.ipynb"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert paired.returncode == 0 and "notebooks/101_mnist_lenet5.ipynb::Cell 0" in paired.stdout


def test_keeping_the_robustness_results_reports_a_failure_and_what_it_kept(monkeypatch, capsys) -> None:
    from dnic_utils.errors import DnicError

    def broken(profile: str, data_dir: str | None) -> list[str]:
        raise DnicError("No data directory at /nowhere.", "set DNIC_DATA_DIR.")

    failures: list[str] = []
    monkeypatch.setattr(runner, "keep_results", broken)
    runner.keep_robustness("budget", "/nowhere", failures)
    assert failures == ["robustness results: No data directory at /nowhere. Fix: set DNIC_DATA_DIR."]
    monkeypatch.setattr(runner, "keep_results", lambda profile, data_dir: ["LeNet-5", "VGG16"])
    runner.keep_robustness("budget", None, failures)
    assert len(failures) == 1 and "robustness results kept for 2 CIFAR-10 models whose checkpoint is here: LeNet-5, VGG16" in capsys.readouterr().out
