"""The report runner: executes every notebook in order with papermill and regenerates the README's tables.

Usage: python -m dnic_utils.runner [--profile auto|smoke|quick|budget|full] [--only GLOB] [--start-at NAME] [--skip-done]
                                  [--stop-after SECONDS] [--seeds 0,1,2] [--jobs N] [--force] [--tables-only]
"""

from __future__ import annotations

import argparse
import fnmatch
import math
import os
import re
import sys
import time
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import nbformat

from .cli import positive_int, refuse
from .config import PROFILES, RunConfig, make_config, resolve_profile, same_recipe
from .corruptions import keep_results
from .data import DATASETS
from .devices import amp_dtype, amp_label, default_device, device_slug
from .errors import DnicError
from .export import export_run
from .files import atomic_write_bytes
from .models import REGISTRY, model_spec
from .onnx_model import find_cards
from .readme import architecture_table, models_table, notebook_index, profile_table, readme_tables, replaced_rows, runtime_table, update_readme
from .records import load_records, make_record, read_record, scan_records, utc_now, write_record
from .seeds import PUBLISHED_SEEDS, SEED_MINUTES, own_time, seeded
from .settings import project_root, share_cores

TEMPLATE = Path("notebooks/templates/model.ipynb")
PATH_CHAR = r"[^\s'\"`,;:()\[\]{}<>]"  # a character of a path in an error message: not a space, quote, bracket or separator
# an absolute POSIX path: a '/' that starts a word (not the second half of 'a/b', './x' or 'https://')
ABSOLUTE_PATH = re.compile(rf"(?<![\w.~:/])/{PATH_CHAR}+")


@dataclass(frozen=True)
class Planned:
    """One notebook of the report: its name, source and the parameters papermill injects."""

    name: str
    source: Path
    parameters: dict
    title: str  # the first heading; written into notebooks generated from the template


def plan() -> list[Planned]:
    """Data exploration first, then every registered architecture grouped by dataset (101…, 201…, 301…), then deployment (60)."""
    items = [Planned("00_data_exploration", Path("notebooks/00_data_exploration.ipynb"), {}, "# 00 · Data exploration: MNIST, Fashion-MNIST and CIFAR-10")]
    for d, (dataset, info) in enumerate(DATASETS.items(), start=1):
        for a, arch in enumerate(REGISTRY, start=1):
            number = f"{d}{a:02d}"
            title = f"# {number} · {model_spec(arch).title} on {info.title}"
            items.append(Planned(f"{number}_{dataset}_{arch}", TEMPLATE, {"arch": arch, "dataset": dataset}, title))
    # after the models: part C starts from the CIFAR-10 FastNet run when it exists
    items.append(Planned("40_transfer_learning", Path("notebooks/40_transfer_learning.ipynb"), {},
                         "# 40 · Transfer learning: ImageNet → CIFAR-10, Yosinski et al. on CIFAR-10, and few labels"))
    # a study of its own: its records (kind 'study', and variant runs) stay out of the README's tables and of 50's comparison
    items.append(Planned("45_hyperparameters", Path("notebooks/45_hyperparameters.ipynb"), {}, "# 45 · Hyper-parameter study: FastNet and MiniGoogLeNet"))
    # after the models (and their extra seeds, which the runner trains after the last model notebook), whose records it compares
    items.append(Planned("50_comparative_analysis", Path("notebooks/50_comparative_analysis.ipynb"), {},
                         "# 50 · Comparative analysis: every architecture on every dataset"))
    # after the models, whose checkpoints it exports
    items.append(Planned("60_deployment", Path("notebooks/60_deployment.ipynb"), {}, "# 60 · Deployment: export, parity and latency"))
    return items


PUBLISHED = "budget"  # the profile whose numbers the report publishes: there the runner adds seeds by itself
DEMO_TIMEOUT = 3600  # seconds per cell below the published profile: a hung cell fails; in budget and full a cell may train for hours


def jobs_arg(text: str) -> int | str:
    """'auto' or a whole number ≥ 1: an argparse type for --jobs."""
    return text if text == "auto" else positive_int(text)


def resolve_jobs(jobs: int | str, profile: str) -> int:
    """--jobs as a number: 'auto' is 2 below the published profile (demonstrations, whose times are not report numbers), else 1."""
    if jobs != "auto":
        return int(jobs)
    return 2 if PROFILES[profile].rank < PROFILES[PUBLISHED].rank else 1


def seed_list(text: str) -> tuple[int, ...]:
    """'0,1,2' as (0, 1, 2): an argparse type for --seeds."""
    try:
        seeds = tuple(dict.fromkeys(int(part) for part in text.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds as whole numbers separated by commas (e.g. 0,1,2), got {text!r}") from None
    if any(seed < 0 for seed in seeds):
        raise argparse.ArgumentTypeError(f"seeds are whole numbers ≥ 0, got {text!r}")
    return seeds


def seed_runs(items: list[Planned], profile: str, seeds: tuple[int, ...] | None) -> list[tuple[Planned, int]]:
    """The (model notebook, seed) runs to add; seed 0 is the notebook's own.

    With explicit --seeds, every selected model. By default, in the published profile only, the models whose default-seed run took
    at most SEED_MINUTES there (training time, less any wait for a core), and ResNet18 and VGG16 on CIFAR-10.
    """
    models = [i for i in items if i.source == TEMPLATE]
    if seeds is None:
        if profile != PUBLISHED:
            return []
        trained = {(r["config"]["dataset"], r["config"]["arch"]): own_time(r) for r in load_records()
                   if r["kind"] == "train" and r["profile"] == profile and not r["config"].get("variant")}
        keys = [(i.parameters["dataset"], i.parameters["arch"]) for i in models]
        models = [i for i, key in zip(models, keys) if seeded(*key, trained.get(key, math.inf))]
        seeds = PUBLISHED_SEEDS
    return [(item, seed) for item in models for seed in seeds if seed != 0]


def batch_order(items: list[Planned]) -> list[Planned | None]:
    """The notebooks in plan order with None where the extra seeds train: after the last model notebook, before those that compare records."""
    after_models = 1 + max((k for k, i in enumerate(items) if i.source == TEMPLATE), default=-1)
    return [*items[:after_models], None, *items[after_models:]] if after_models else list(items)


def trained_as_now(profile: str, cfg: RunConfig) -> bool:
    """True when `profile` holds a record of cfg's run trained as cfg now says: its recipe, and its profile's sizes and epochs too."""
    record = read_record(profile, cfg.run_name)
    return record is not None and same_recipe(record, cfg)


def notebook_done(item: Planned, out: Path, profile: str) -> bool:
    """--skip-done's test: the executed notebook is this profile's and, for a model notebook, its run's record is trained as now."""
    if not (out.is_file() and notebook_profile(out) == profile):
        return False
    return item.source != TEMPLATE or trained_as_now(profile, make_config(item.parameters["arch"], item.parameters["dataset"], profile))


def run_seed(item: Planned, seed: int, profile: str, skip_done: bool) -> str:
    """Train one extra seed of a model notebook's run into a record of its own (no notebook); what happened, in a few words."""
    from .experiment import run

    cfg = make_config(item.parameters["arch"], item.parameters["dataset"], profile, seed=seed)
    if skip_done and trained_as_now(profile, cfg):
        return f"record {cfg.run_name} exists, skipped (--skip-done)"
    run(cfg, os.environ.get("DNIC_DATA_DIR"))
    return f"record {cfg.run_name} written"


def train_seeds(runs: list[tuple[Planned, int]], profile: str, args: argparse.Namespace, deadline: float | None, failures: list[str],
                seconds: list[float]) -> bool:
    """Train the extra seeds in turn, each failure added to `failures` and each run's time to `seconds`; False when --stop-after's deadline stopped them."""
    root = project_root()
    for k, (item, seed) in enumerate(runs, start=1):
        if deadline is not None and time.monotonic() > deadline:
            print(f"[seed {k}/{len(runs)}] stopping: {args.stop_after} s have passed (--stop-after); resume with --skip-done", flush=True)
            return False
        print(f"[seed {k}/{len(runs)}] {item.name} seed {seed}", flush=True)
        t0 = time.perf_counter()
        try:
            what = run_seed(item, seed, profile, args.skip_done)
        except Exception as err:
            failures.append(failure(root, f"{item.name} seed {seed}", err))
            print(f"    FAILED after {time.perf_counter() - t0:.1f} s", flush=True)
        else:
            print(f"    {what} ({time.perf_counter() - t0:.1f} s)", flush=True)
        seconds.append(time.perf_counter() - t0)
    return True


def notebook_metadata(path: Path) -> dict:
    """An executed notebook's metadata ({} when it is missing or unreadable)."""
    try:
        return dict(nbformat.read(path, as_version=4).metadata)
    except (OSError, ValueError, AttributeError, nbformat.ValidationError):  # unreadable, not JSON, or not a notebook
        return {}


def notebook_profile(path: Path) -> str | None:
    """The profile recorded in an executed notebook's metadata, if any."""
    return notebook_metadata(path).get("dnic", {}).get("profile")


def output_path(root: Path, item: Planned, profile: str, force: bool) -> Path:
    """notebooks/<name>.ipynb, unless it holds a higher profile's run: then build/<profile>/notebooks/."""
    target = root / "notebooks" / f"{item.name}.ipynb"
    existing = notebook_profile(target) if target.exists() else None
    rank = PROFILES[existing].rank if existing in PROFILES else math.inf  # an unknown profile's notebook is kept
    if force or existing is None or rank <= PROFILES[profile].rank:
        return target
    return root / "build" / profile / "notebooks" / f"{item.name}.ipynb"


def materialise(root: Path, item: Planned, profile: str) -> Path:
    """The notebook papermill executes: the source itself, or the template with its title filled in."""
    if item.source != TEMPLATE:
        return root / item.source
    nb = nbformat.read(root / item.source, as_version=4)
    first = nb.cells[0]
    first.source = "\n".join([item.title, *first.source.splitlines()[1:]])
    path = root / "build" / profile / "sources" / f"{item.name}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def execute(root: Path, item: Planned, profile: str, out: Path, timeout: int | None) -> None:
    """Run one notebook with papermill; only a successful run replaces `out` (a failed one goes to build/<profile>/failed/)."""
    import papermill as pm

    work = root / "build" / profile / "running" / f"{item.name}.ipynb"
    work.parent.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(
            str(materialise(root, item, profile)), str(work), parameters={**item.parameters, "profile": profile},
            kernel_name="python3", execution_timeout=timeout, progress_bar=False, cwd=str(root / "notebooks"),
        )
    except BaseException:
        if work.exists():
            failed = root / "build" / profile / "failed" / work.name
            failed.parent.mkdir(parents=True, exist_ok=True)
            os.replace(work, failed)
        raise
    nb = nbformat.read(work, as_version=4)
    nb.metadata["dnic"] = {"profile": profile}
    for key in ("input_path", "output_path"):  # papermill stores absolute paths; keep machine paths out of the repo
        if key in nb.metadata.get("papermill", {}):
            nb.metadata.papermill[key] = os.path.relpath(nb.metadata.papermill[key], root)
    atomic_write_bytes(out, nbformat.writes(nb).encode())
    work.unlink()


def execute_timed(root: Path, item: Planned, profile: str, out: Path, timeout: int | None, deadline: float | None,
                  label: str) -> float | None:
    """execute() announced by `label`; its seconds, or None when the deadline (time.monotonic()) passed before it could start."""
    if deadline is not None and time.monotonic() > deadline:
        return None
    print(label, flush=True)
    t0 = time.perf_counter()
    execute(root, item, profile, out, timeout)
    return round(time.perf_counter() - t0, 1)


def scrub_paths(text: str, root: Path) -> str:
    """`text` with the project root made relative ('.') and any other absolute path cut to its base name ('<path>' if it has none)."""
    for base in sorted({str(root), str(root.resolve())}, key=len, reverse=True):
        text = re.sub(re.escape(base) + rf"(?=/|(?!{PATH_CHAR}))", ".", text)  # the root or a path in it, not /root-old
    return ABSOLUTE_PATH.sub(lambda m: Path(m.group()).name or "<path>", text)


def failure(root: Path, name: str, err: BaseException) -> str:
    """How a record and the console name a failed notebook: its name, the failing cell if known, the error's type and message, no machine path."""
    cell = getattr(err, "exec_count", None)  # papermill's error carries the failing cell; anything else is reported whole
    detail = scrub_paths(f"{getattr(err, 'ename', type(err).__name__)}: {getattr(err, 'evalue', err)}", root)
    return f"{name} (cell [{cell}]): {detail}" if cell is not None else f"{name}: {detail}"


def timing_record(profile: str, device: str, timings: dict[str, float], failures: list[str], wall_time_s: float, options: dict,
                  seed_seconds: Sequence[float] = (), alone: Collection[str] = (), finished: dict[str, str] | None = None) -> dict:
    """The report-run record of a profile, device model and precision: this call's notebook times merged into those of earlier calls.

    whole_report keeps the latest call that ran every notebook of the plan with no failure (extra seeds' included), and
    the extra seeds it trained on the way, whose time its wall time includes. The notebooks in `alone` ran one at a time
    even in a call with --jobs above 1 (those after the model notebooks).
    """
    precision = amp_label(amp_dtype("auto", device))  # what the notebooks' default amp='auto' runs in on this device
    name = f"report-run-{device_slug(device, precision)}"  # one per device model and precision: an H100's times stay apart from an H200's
    earlier = [r for r in load_records() if r["kind"] == "report" and r["name"] == name and r["profile"] == profile]
    notebooks = dict(earlier[-1]["metrics"]["notebooks"]) if earlier else {}
    record = make_record("report", name, profile, {k: options.get(k) for k in ("only", "start_at", "skip_done", "stop_after", "jobs", "seeds")}, {},
                         device=device, data={}, seed=0, wall_time_s=wall_time_s, failures=failures, precision=precision)
    for nb, seconds in timings.items():  # each notebook keeps the time, date (when it finished) and commit of its latest successful run
        notebooks[nb] = {"seconds": seconds, "date": (finished or {}).get(nb, record["created"]), "git_commit": record["git_commit"], "jobs": 1 if nb in alone else options.get("jobs", 1)}
    record["metrics"] = {"notebooks": notebooks, "total_s": round(sum(n["seconds"] for n in notebooks.values()), 1)}
    whole = earlier[-1]["metrics"].get("whole_report") if earlier else None
    if not failures and set(timings) >= {i.name for i in plan()}:  # this call alone has run every notebook: the report's wall time
        whole = {"wall_time_s": round(wall_time_s, 1), "date": record["created"], "git_commit": record["git_commit"], "jobs": options.get("jobs", 1),
                 "notebooks": len(timings), "seed_runs": len(seed_seconds), "seeds_s": round(sum(seed_seconds), 1)}
    if whole:
        record["metrics"]["whole_report"] = whole
    return record


def regenerate_readme(root: Path) -> None:
    """Rewrite the README's generated sections (results tables, architectures, notebook index, profiles, runtimes and exported models); name the unreadable records."""
    metadata = {i.name: notebook_metadata(root / "notebooks" / f"{i.name}.ipynb") for i in plan()}
    entries = [(i.name, i.title.split("· ", 1)[-1], metadata[i.name].get("dnic", {}).get("profile"), metadata[i.name].get("papermill", {}).get("end_time"))
               for i in plan()]
    records, unreadable = scan_records(root / "results")
    for problem in unreadable:
        print(f"warning: run record left out of the README: {problem}", file=sys.stderr)
    update_readme(root / "README.md", {"results": readme_tables(records, unreadable), "notebooks": notebook_index(entries, records),
                                      "profiles": profile_table(), "architectures": architecture_table(),
                                      "runtimes": runtime_table(records, len(entries)), "models": models_table(find_cards([root / "results"]))})


def refresh_exports(root: Path, profile: str, data_dir: str | None, failures: list[str]) -> None:
    """Export again each of the profile's exported models whose run was trained again since (its checkpoint is here); a failure is added to `failures`."""
    for card in find_cards([root / "results"]):
        if card["profile"] == profile and card["superseded"]:
            try:
                export_run(card["source"]["run"], profile, data_dir=data_dir)
            except DnicError as err:
                failures.append(f"export of {card['name']} ({card['superseded']}): {err.problem} Fix: {err.fix}")
            else:
                print(f"exported {card['name']} again: {card['superseded']}", flush=True)


def keep_robustness(profile: str, data_dir: str | None, failures: list[str]) -> None:
    """Keep the robustness results of the profile's CIFAR-10 runs whose checkpoint is here (see corruptions.keep_results); a failure is added to `failures`."""
    try:
        kept = keep_results(profile, data_dir)
    except DnicError as err:
        failures.append(f"robustness results: {err.problem} Fix: {err.fix}")
    else:
        if kept:
            print(f"robustness results kept for {len(kept)} CIFAR-10 models whose checkpoint is here: {', '.join(kept)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    """Execute the report; print per-notebook status; exit non-zero if any notebook failed."""
    parser = argparse.ArgumentParser(prog="python -m dnic_utils.runner", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="auto", help="smoke, quick, budget, full or auto (default; DNIC_PROFILE overrides)")
    parser.add_argument("--only", default="*", help="glob on notebook names, e.g. '*mnist*'")
    parser.add_argument("--start-at", default=None, help="skip the notebooks before this name (resume a batch run)")
    parser.add_argument("--skip-done", action="store_true", help="skip notebooks whose executed copy in notebooks/ already has this profile "
                        "(a model notebook: and a record of its run as the profile now trains it)")
    parser.add_argument("--stop-after", type=positive_int, default=None,
                        help="start no further notebook once this many seconds have passed (split a batch run across time-limited sessions)")
    parser.add_argument("--seeds", type=seed_list, default=None,
                        help=f"extra seeds for every selected model, e.g. 0,1,2 (0 is the notebook's own run), trained into records of their "
                             f"own after the model notebooks; default: in {PUBLISHED}, {','.join(map(str, PUBLISHED_SEEDS))} for the models whose "
                             f"run trained for ≤ {SEED_MINUTES} min there (less its waits for a core) and ResNet18 and VGG16 on CIFAR-10; elsewhere none (--seeds 0: none)")
    parser.add_argument("--jobs", type=jobs_arg, default="auto",
                        help="notebooks executed at once up to the extra seeds (00 and the model notebooks), each kernel with cores/jobs threads; "
                             f"their times are then taken side by side (default: auto, 2 in the demonstration profiles below {PUBLISHED}, "
                             "whose times are not report numbers, else 1)")
    parser.add_argument("--timeout", type=positive_int, default=None,
                        help=f"per-cell execution timeout in seconds (default: {DEMO_TIMEOUT} below {PUBLISHED}; none in {PUBLISHED} and full, "
                             "where one training cell can take hours on a CPU)")
    parser.add_argument("--data-dir", default=None, help="offline data root (sets DNIC_DATA_DIR)")
    parser.add_argument("--force", action="store_true", help="let a lower profile overwrite a higher profile's notebooks")
    parser.add_argument("--list", action="store_true", help="print the plan and exit")
    parser.add_argument("--tables-only", action="store_true", help="only regenerate the README's tables from the records under results/")
    args = parser.parse_args(argv)
    try:
        profile = resolve_profile(args.profile).name
    except DnicError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    root = project_root()
    items = [i for i in plan() if fnmatch.fnmatch(i.name, args.only)]
    if args.start_at:
        names = [i.name for i in items]
        if args.start_at not in names:
            print(f"error: --start-at {args.start_at!r} is not in the plan.\nFix: use one of: {', '.join(names)}", file=sys.stderr)
            return 2
        items = items[names.index(args.start_at):]
    if args.tables_only:
        try:
            regenerate_readme(root)
        except DnicError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        print("README tables regenerated from the records under results/")
        return 0
    if args.list or not items:
        print("\n".join(i.name for i in items) or f"no notebook matches --only {args.only!r}")
        return 0 if items else 2
    data_root = args.data_dir or os.environ.get("DNIC_DATA_DIR")
    if data_root and not Path(data_root).expanduser().is_dir():  # before any notebook starts, not once in each
        return refuse(DnicError(f"The data folder {data_root} (--data-dir or DNIC_DATA_DIR) does not exist.",
                                "name the folder that holds the datasets (e.g. ../shared/data), or set neither to download them."))
    if data_root:  # the kernels run in notebooks/, so a relative root must be made absolute
        os.environ["DNIC_DATA_DIR"] = str(Path(data_root).expanduser().resolve())
    os.environ.update(DNIC_PROFILE=profile, DNIC_QUIET="1")
    shown = load_records()  # the records behind the README's rows before this batch, to name the rows it replaces
    failures, timings, seed_seconds, start = [], {}, [], time.perf_counter()
    finished: dict[str, str] = {}  # when each notebook of this call finished
    print(f"dnic report: {len(items)} notebook(s), profile {profile}", flush=True)
    args.jobs = resolve_jobs(args.jobs, profile)
    if args.timeout is None and PROFILES[profile].rank < PROFILES[PUBLISHED].rank:
        args.timeout = DEMO_TIMEOUT
    # One clock for --stop-after: the monotonic clock is system-wide, so the --jobs workers read the same one.
    deadline = time.monotonic() + args.stop_after if args.stop_after else None
    steps = batch_order(items)
    side_by_side = steps[:steps.index(None)] if args.jobs > 1 and None in steps else []  # 00 and the model notebooks
    waiting: list[tuple[Planned, Path, Future]] = []

    def settle(item: Planned, out: Path, outcome: Callable[[], float | None]) -> bool:
        """Report one notebook's outcome and keep its time; False when --stop-after stopped it before it started."""
        try:
            seconds = outcome()
        except Exception as err:
            failures.append(failure(root, item.name, err))
            print(f"    {item.name} FAILED", flush=True)
            return True
        if seconds is None:
            print(f"    {item.name}: stopping: {args.stop_after} s have passed (--stop-after); resume with --start-at {item.name} or --skip-done",
                  flush=True)
            return False
        timings[item.name], finished[item.name] = seconds, utc_now()
        kept = "" if out.parent == root / "notebooks" else f" (a higher profile's notebook is kept; output in {out.relative_to(root)})"
        print(f"    {item.name} ok in {seconds} s{kept}", flush=True)
        # after every notebook, so that a batch stopped from outside keeps the times of those that finished
        write_record(timing_record(profile, default_device(), timings, failures, time.perf_counter() - start, vars(args), seed_seconds,
                                  [i.name for i in items if i not in side_by_side], finished))
        return True

    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn"), initializer=share_cores, initargs=(args.jobs,)) \
            if side_by_side else nullcontext() as pool:
        for item in steps:
            if item is None:  # the extra seeds, once the notebooks before them are done
                going = all([settle(i, o, f.result) for i, o, f in waiting])
                waiting.clear()
                if going and train_seeds(seed_runs(items, profile, args.seeds), profile, args, deadline, failures, seed_seconds):
                    continue
                break
            out = output_path(root, item, profile, args.force)
            label = f"[{items.index(item) + 1}/{len(items)}] {item.name}"
            if args.skip_done and notebook_done(item, out, profile):
                print(f"{label}: done in this profile, skipped (--skip-done)", flush=True)
                continue
            task = (execute_timed, root, item, profile, out, args.timeout, deadline, label)
            if item in side_by_side:
                waiting.append((item, out, pool.submit(*task)))
            elif not settle(item, out, partial(*task)):
                break
    seeds = f", {len(seed_seconds)} extra seed run(s)" if seed_seconds else ""
    summary = f"{len(timings)} ok{seeds}, {len(failures)} failed, {time.perf_counter() - start:.0f} s in all"
    if timings:
        refresh_exports(root, profile, os.environ.get("DNIC_DATA_DIR"), failures)
        keep_robustness(profile, os.environ.get("DNIC_DATA_DIR"), failures)
        try:
            regenerate_readme(root)
        except DnicError as err:  # the notebooks and records written stay; only the tables wait
            print(f"error: {err}", file=sys.stderr)
            return 1
        for line in replaced_rows(shown, load_records()):
            print(line, flush=True)
        print(f"README tables regenerated; {summary}", flush=True)
    else:  # a call in which nothing succeeded changes no committed file
        written = " (each extra seed's record is written as it finishes)" if seed_seconds else ""
        print(f"no notebook executed successfully in this call: README.md and the timing record left as they were{written}; {summary}", flush=True)
    for line in failures:
        print(f"  FAILED {line}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
