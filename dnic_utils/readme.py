"""The README's generated sections, formatted from run records and model cards: results, architectures, notebooks, profiles, runtimes, models."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .config import PROFILES, Profile, tta_views, views_label
from .data import DATASETS
from .devices import device_label, wait_pct
from .errors import DnicError
from .files import atomic_write_bytes
from .models import REGISTRY, model_cost, model_spec

REPOSITORY = "dnic-report/dnic"  # the GitHub slug the Colab badges and install cells point at


def best_records(records: list[dict]) -> dict[tuple[str, str], dict]:
    """For each (dataset, arch), the training record of the highest profile (newest among equals)."""
    best: dict[tuple[str, str], dict] = {}
    for r in records:
        if r["kind"] != "train" or r["config"].get("variant"):  # runs with non-default parameters are not the report's
            continue
        key = (r["config"]["dataset"], r["config"]["arch"])
        rank = (PROFILES[r["profile"]].rank, r["created"])
        if key not in best or rank > (PROFILES[best[key]["profile"]].rank, best[key]["created"]):
            best[key] = r
    return best


def results_table(records: list[dict], dataset: str) -> pd.DataFrame:
    """The results table of one dataset, one row per architecture, formatted from run records."""
    rows = []
    order = list(REGISTRY)
    chosen = sorted((r for (d, _), r in best_records(records).items() if d == dataset), key=lambda r: order.index(r["config"]["arch"]) if r["config"]["arch"] in order else len(order))
    for r in chosen:
        m = r["metrics"]
        rows.append({
            "model": r["arch_title"], "profile": r["profile"], "epochs": str(m["epochs_run"]), "size (MB)": f"{m['size_mb']:.1f}", "trainable params": f"{m['trainable_params']:,}",
            "train loss": f"{m['train_loss']:.3f}", "test loss": f"{m['test_loss']:.3f}",
            "train acc (%)": f"{100 * m['train_acc']:.2f}", "test acc (%)": f"{100 * m['test_acc']:.2f}", "test views": test_views(r),
            "macro P (%)": f"{100 * m['macro_precision']:.2f}", "macro R (%)": f"{100 * m['macro_recall']:.2f}", "macro F1 (%)": f"{100 * m['macro_f1']:.2f}",
            "MFLOPs/img": f"{m['flops'] / 1e6:,.1f}", "train time (s)": f"{m['train_time_s']:.1f}", "images/s": f"{m['images_per_s']:,.0f}",
            "CPU wait (%)": wait_pct(m.get("train_cpu_wait")), "device": device_label(r["device"]), "precision": m["amp"], "date": r["created"][:10],
        })
    return pd.DataFrame(rows)


def test_views(record: dict) -> str:
    """The record's test views cell: '1', or the forward passes its accuracy averaged per image and the mode, e.g. '6 (multiview)'."""
    tta = record["config"].get("tta") or "off"
    views = tta_views(tta, DATASETS[record["config"]["dataset"]].flip) if record["config"]["dataset"] in DATASETS else 1
    return views_label(views, tta)


def readme_tables(records: list[dict], unreadable: Sequence[str] = ()) -> str:
    """Markdown for the README: one results table per dataset that has records, then the record files that could not be read."""
    parts = []
    for key in DATASETS:
        table = results_table(records, key)
        if table.empty:
            continue
        sources = {r["data"]["title"] for (d, _), r in best_records(records).items() if d == key}
        # the cells are already formatted: tabulate must not re-parse them, only right-align the numeric columns
        align = ["left" if c in ("model", "profile", "device", "precision", "date") else "right" for c in table.columns]
        parts.append(f"#### {' / '.join(sorted(sources))}\n\n{table.to_markdown(index=False, disable_numparse=True, colalign=align)}\n")
    not_shown = "".join(f"\n_Not shown: {problem}_\n" for problem in unreadable)  # no row is left out without a word
    if not parts:
        return "_No run records yet: run the report command below._\n" + not_shown
    note = ("Train loss and accuracy are running means over the selected epoch, on augmented batches and with label smoothing (which keeps "
            "that loss well above zero), so they are not comparable with the test columns; test metrics are from one evaluation of the "
            "validation-selected weights. Test views are the forward passes averaged per test image (test-time augmentation, part of "
            "some architectures' recipes): such an accuracy costs that many times the single-pass MFLOPs at inference. CPU wait is the share of their runnable time that the run's threads spent waiting for a core "
            "while training (Linux run-queue delay): near 0, the run was rarely kept from a core (lower-priority work may still have "
            "run beside it); well above it, other work shared the CPU and its time and images/s are not speed numbers (—: not measured). `smoke` and `quick` rows are pipeline checks, not the report's numbers.\n")
    return "\n".join(parts) + "\n" + note + not_shown


def row_summary(record: dict) -> str:
    """A results row's device, precision and date, e.g. 'CPU (AMD EPYC, 2 threads) fp32 2026-11-30'."""
    return f"{device_label(record['device'])} {record['metrics']['amp']} {record['created'][:10]}"


def replaced_rows(before: list[dict], after: list[dict]) -> list[str]:
    """One line per results row that `after` shows from another record than `before` did, with the old and new device, precision and date."""
    old, new = best_records(before), best_records(after)
    lines = []
    for key, record in new.items():
        earlier = old.get(key)
        if earlier is None or earlier == record:
            continue
        title = DATASETS[key[0]].title if key[0] in DATASETS else key[0]
        profile = record["profile"] if earlier["profile"] == record["profile"] else f"{earlier['profile']} → {record['profile']}"
        lines.append(f"replaced README row {title} · {record['arch_title']} · {profile}: {row_summary(earlier)} → {row_summary(record)}")
    return lines


def notebook_times(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """Per (profile, notebook): its timed run in each report-run record (one per device and precision), with that device and precision."""
    runs: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        for name, run in (r["metrics"].get("notebooks", {}) if r["kind"] == "report" else {}).items():
            runs.setdefault((r["profile"], name), []).append({**run, "device": r["device"], "precision": r.get("precision", "?")})
    return runs


def utc_time(text: object) -> dt.datetime | None:
    """An ISO time as an aware UTC datetime (a naive one taken as UTC); None for anything else."""
    try:
        when = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def committed_time(runs: list[dict], end_time: str | None) -> dict | None:
    """The timing of a committed notebook's run: the first recorded once its execution ended (papermill's end_time), else None."""
    ended = utc_time(end_time)
    if ended is None:  # executed without papermill's metadata (or an unreadable one): the latest timing, if any
        return max(runs, key=lambda run: run["date"], default=None)
    ended -= dt.timedelta(minutes=2)  # the runner records the time just after the notebook is written
    after = [run for run in runs if (when := utc_time(run["date"])) is not None and when >= ended]  # an unreadable date never matches
    return min(after, key=lambda run: utc_time(run["date"]), default=None)


def notebook_index(entries: list[tuple[str, str, str | None, str | None]], records: list[dict]) -> str:
    """A Markdown table of the report's notebooks, (file stem, title, profile and end time of the committed run) each: its wall time, the
    commit of the code that executed it, a Colab badge."""
    rows = ["| notebook | what | committed run: profile | its wall time | its code (commit) | Colab |", "|---|---|---|---|---|---|"]
    times = notebook_times(records)
    for stem, title, profile, end_time in entries:
        url = f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/notebooks/{stem}.ipynb"
        run = committed_time(times.get((profile, stem), []), end_time)
        side = f" ({run['jobs']} at a time)" if run and run.get("jobs", 1) > 1 else ""
        took = f"{run['seconds']:,.0f} s{side}, {device_label(run['device'])}, {run['precision']}" if run else "—"
        commit = f"`{run['git_commit'][:7]}`{'-dirty' if run['git_commit'].endswith('-dirty') else ''}" if run and run.get("git_commit") else "—"
        rows.append(f"| [`{stem}`](notebooks/{stem}.ipynb) | {title} | {f'`{profile}`' if profile else '—'} | {took} | {commit} | "
                    f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url}) |")
    return "\n".join(rows) + "\n"


def architecture_table() -> str:
    """The README's table of registered architectures: family, tier, minimum input, and size and FLOPs on both input kinds."""
    rows = ["| name | model | family | tier | min input | params (1×28×28) | MFLOPs (1×28×28) | params (3×32×32) | MFLOPs (3×32×32) |",
            "|---|---|---|---|---|---|---|---|---|"]
    for arch, spec in REGISTRY.items():
        grey, rgb = model_cost(arch, 10, 1, 28), model_cost(arch, 10, 3, 32)
        rows.append(f"| `{arch}` | {spec.title} | {spec.family} | {spec.tier} | {spec.min_size}×{spec.min_size} | {grey['params']:,} | "
                    f"{grey['flops'] / 1e6:,.1f} | {rgb['params']:,} | {rgb['flops'] / 1e6:,.1f} |")
    return "\n".join(rows) + "\n"


def profile_table() -> str:
    """The README's table of profiles, from config.PROFILES."""
    def n(value: int | None) -> str:
        """A size, or 'all' for None."""
        return "all" if value is None else f"{value:,}"

    light = ", ".join(model_spec(a).title for a in REGISTRY if model_spec(a).tier == "light")
    heavy = ", ".join(model_spec(a).title for a in REGISTRY if model_spec(a).tier == "heavy")
    rows = ["| profile | training images (heavy models) | validation images | test images | epochs (light models) | batch |", "|---|---|---|---|---|---|"]
    def epochs(p: Profile) -> str:
        """'1 (8)', or the epochs per dataset where the profile sets them for every architecture."""
        if p.dataset_epochs:
            return ", ".join(f"{DATASETS[d].title} {e}" for d, e in p.dataset_epochs.items()) + " (all models)"
        return f"{p.epochs} ({p.light_epochs})"

    rows += [f"| `{p.name}` | {n(p.train_size)} ({n(p.heavy_train_size)}) | {p.val_size:,} | {n(p.test_size)} | {epochs(p)} | {p.batch_size} |"
             for p in PROFILES.values()]
    rows.append(f"\nLight models: {light}. Heavy models: {heavy}.")
    return "\n".join(rows) + "\n"


def runtime_table(records: list[dict], planned: int) -> str:
    """The README's table of report wall times per profile, device and precision, from the runner's report-run records."""
    rows = ["| profile | device | precision | notebooks timed | wall time, summed (min) | slowest notebook | last run | notebooks at a time | "
            "last call's wall time (min) | whole report in one call (min) |", "|---|---|---|---|---|---|---|---|---|---|"]
    runs = sorted((r for r in records if r["kind"] == "report" and r["metrics"].get("notebooks")), key=lambda r: PROFILES[r["profile"]].rank)
    for r in runs:
        times = {name: n["seconds"] for name, n in r["metrics"]["notebooks"].items()}
        slowest = max(times, key=times.get)
        precision = r.get("precision", "?")  # records named report-run-<device>, from before precision was recorded, lack it
        jobs = sorted({n.get("jobs", 1) for n in r["metrics"]["notebooks"].values()})  # --jobs of the calls that timed them
        rows.append(f"| `{r['profile']}` | {device_label(r['device'])} | {precision} | {len(times)} of {planned} | "
                    f"{r['metrics']['total_s'] / 60:.1f} | `{slowest}` ({times[slowest]:,.0f} s) | {r['created'][:10]} | "
                    f"{jobs[0]}{f'–{jobs[-1]}' if len(jobs) > 1 else ''} | {r['wall_time_s'] / 60:.1f} | {whole_report_text(r['metrics'].get('whole_report'), planned)} |")
    if not runs:
        return "_No timed report runs yet._\n"
    return "\n".join(rows) + ("\n\nEach notebook counts with its latest successful run (papermill execution, kernel start included). With "
                               "`--jobs 2` the model notebooks run two at a time, so their times are taken side by side and the summed time exceeds "
                               "the wall time; \"last call\" is the wall time of the latest runner call alone, and the last column that of the latest "
                               "call that ran every notebook of the plan without a failure (its date and --jobs), where one has.\n")


def whole_report_text(whole: dict | None, planned: int) -> str:
    """A timing record's latest call that ran every notebook: '24.9 (2026-12-01, 2 at a time)', with its extra seeds and a plan since changed; or '—'."""
    if not whole:
        return "—"
    notes = [whole["date"][:10], f"{whole['jobs']} at a time"]
    if whole.get("seed_runs"):
        notes.append(f"{whole['seed_runs']} extra seed runs included, {whole['seeds_s'] / 60:.1f} min")
    if whole.get("notebooks", planned) != planned:  # a notebook added to the plan since: this call did not run it
        notes.append(f"{whole['notebooks']} notebooks, {planned} planned now")
    return f"**{whole['wall_time_s'] / 60:.1f}** ({', '.join(notes)})"


def models_table(cards: list[dict]) -> str:
    """The README's table of exported models (onnx_model.find_cards of the project), the highest profile first."""
    rows = ["| model | what | profile | test acc (%), one pass per image | parity: same top class, max abs logit diff | ONNX (MB) | input | file |",
            "|---|---|---|---|---|---|---|---|"]
    for c in cards:
        p, shape, accuracy = c["parity"], c["input"]["shape"], "–" if c["test_acc"] is None else f"{100 * c['test_acc']:.2f}"
        check = f"{p['same_argmax']:,}/{p['images']:,}, {p['max_abs_diff']:.1e}" if p else "not checked"
        title = c["title"] + (f" — **out of date**: {c['superseded']}; export it again" if c.get("superseded") else "")
        rows.append(f"| `{c['name']}` | {title} | `{c['profile']}` | {accuracy} | {check} | {c['size_mb']:.2f} | "
                    f"{c['input']['dtype']} {shape[1]}×{shape[2]}×{shape[3]} {c['input']['colour']} | [`{c['onnx_file']}`](results/{c['profile']}/models/{c['onnx_file']}) |")
    if not cards:
        return "_No exported models yet: `python -m dnic_utils.export RUN` writes one under `results/<profile>/models/`._\n"
    return "\n".join(rows) + "\n"


def update_readme(readme: Path, sections: dict[str, str]) -> bool:
    """Replace the README's generated sections (marked <!-- dnic:NAME:start/end -->); return True if it changed."""
    text = new = readme.read_text()
    for name, content in sections.items():
        start, end = f"<!-- dnic:{name}:start -->", f"<!-- dnic:{name}:end -->"
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
        if not pattern.search(new):
            raise DnicError(f"{readme} lacks the markers {start} … {end} around its generated '{name}' table.",
                            f"restore the two marker lines (git checkout {readme.name} restores the committed README), then run "
                            "python -m dnic_utils.runner --tables-only.")
        new = pattern.sub(lambda _: f"{start}\n{content}{end}", new)
    if new != text:
        atomic_write_bytes(readme, new.encode())
    return new != text
