"""Text and tables of the report, formatted from runs and run records: headers, summaries, discussion, README tables."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .config import PROFILES, RunConfig
from .data import DATASETS, dataset_info, dataset_title, load_raw
from .metrics import top_confusions
from .models import REGISTRY, anatomy, build_model, model_spec
from .records import atomic_write_bytes, device_info, load_records, versions

if TYPE_CHECKING:
    from .experiment import Experiment

REPOSITORY = "dnic-report/dnic"  # the GitHub slug the Colab badges and install cells point at


def device_label(info: dict) -> str:
    """'NVIDIA H100 80GB HBM3' or 'CPU (x86_64, 2 threads)'."""
    return info["name"] if info["type"] == "cuda" else f"CPU ({info['name']}, {info['threads']} threads)"


def device_slug(device: str) -> str:
    """The device model as a file-name part, e.g. 'nvidia-h100-80gb-hbm3': records of one model never replace another's."""
    return re.sub(r"[^a-z0-9]+", "-", device_label(device_info(device)).lower()).strip("-")


def run_header(profile: str, device: str) -> str:
    """The line every notebook shows at its top: profile, device, versions and date."""
    v = versions()
    today = dt.date.today().isoformat()
    return (f"**Profile:** `{profile}` · **Device:** {device_label(device_info(device))} · "
            f"torch {v['torch']}, torchvision {v['torchvision']} · run on {today}")


def dataset_summary(name: str, data_dir: str | None = None) -> pd.DataFrame:
    """Source, lossiness, full split sizes and image shape of one dataset (independent of the profile)."""
    info = dataset_info(name)
    raw = load_raw(name, data_dir)
    return pd.DataFrame(
        [{"dataset": dataset_title(info, raw.source), "train images": len(raw.train_y), "test images": len(raw.test_y),
          "image shape (C×H×W)": "×".join(map(str, raw.train_x.shape[1:])), "classes": len(info.classes),
          "lossy copy": bool(raw.source.get("lossy"))}]
    ).set_index("dataset")


def cost_table(arch: str, cost: dict) -> pd.DataFrame:
    """Parameters, size and FLOPs of a model as a one-row table."""
    return pd.DataFrame([{
        "model": model_spec(arch).title, "parameters": f"{cost['params']:,}", "trainable": f"{cost['trainable_params']:,}",
        "size (MB)": round(cost["size_mb"], 2), "MFLOPs / image": round(cost["flops"] / 1e6, 1),
    }]).set_index("model")


def architecture(arch: str, in_channels: int, image_size: int) -> tuple[str, pd.DataFrame]:
    """The registry's principle and what-to-look-for text, formatted from the built model, and its FLOPs by layer kind."""
    spec = model_spec(arch)
    layers = anatomy.layer_table(build_model(arch, 10, in_channels, image_size), in_channels, image_size)
    table = anatomy.breakdown(layers)
    table = pd.DataFrame({"layers": table["layers"], "MFLOPs / image": (table["flops"] / 1e6).round(2),
                          "FLOPs share (%)": table["FLOPs share (%)"].round(1), "params share (%)": table["params share (%)"].round(1)})
    return f"{spec.summary}\n\n{spec.look_for.format(**anatomy.stats(layers))}", table


def discussion(exp: "Experiment") -> str:
    """A short discussion of a run whose every number comes from the run itself."""
    m, cfg = exp.metrics, exp.cfg
    mistakes = top_confusions(m["confusion"], exp.splits.classes)
    worst = exp.per_class().sort_values("f1-score").iloc[0]
    lines = [
        f"{exp.title} reached **{100 * m['test_acc']:.2f}%** test accuracy (macro F1 {100 * m['macro_f1']:.2f}%) "
        f"on {len(exp.y_true):,} test images, with the weights of epoch {m['best_epoch']} of {m['epochs_run']} "
        f"selected on the validation split ({100 * m['best_val_acc']:.2f}% there).",
        f"Training took {m['train_time_s']:.1f} s at {m['images_per_s']:,.0f} images/s ({m['amp']}); "
        f"one forward pass of a single image takes {m['latency_ms'][min(m['latency_ms'])]:.2f} ms on this device.",
        f"The hardest class is *{worst.name}* (F1 {100 * worst['f1-score']:.1f}%).",
    ]
    if mistakes:
        listed = ", ".join(f"{t} → {p} ({n})" for t, p, n in mistakes)
        lines.append(f"The most frequent confusions are {listed}.")
    weights = exp.branch_weights()
    if weights is not None:
        means = weights["mean weight"].unstack()
        listed = "; ".join(f"block {b}: " + " / ".join(f"{v:.2f}" for v in row) for b, row in means.iterrows())
        lines.append(f"The learned branch weights, averaged over {weights.attrs['images']} validation images, are {listed} "
                     f"(uniform would be {1 / means.shape[1]:.2f} each); they vary across images by a standard deviation of up to "
                     f"{weights['std across images'].max():.3f}, which is how much the weighting adapts to the input.")
    peers = [r for r in load_records() if r["kind"] == "train" and r["profile"] == cfg.profile and not r["config"].get("variant")
             and r["config"]["dataset"] == cfg.dataset and r["config"]["arch"] != cfg.arch]  # runs with other parameters are not the report's
    if peers:
        listed = ", ".join(f"{r['arch_title']} {100 * r['metrics']['test_acc']:.2f}%" for r in sorted(peers, key=lambda r: -r["metrics"]["test_acc"]))
        lines.append(f"For comparison, in the same `{cfg.profile}` profile: {listed}.")
    if cfg.profile != "full":
        lines.append(f"These are `{cfg.profile}`-profile numbers ({cfg.epochs} epoch(s) on {len(exp.splits.train_y):,} training images): "
                     "they show the pipeline works, not what the architecture can reach; the `full` profile gives the report's numbers.")
    return "\n\n".join(lines)


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
            "model": r["arch_title"], "profile": r["profile"], "size (MB)": f"{m['size_mb']:.1f}", "trainable params": f"{m['trainable_params']:,}",
            "train loss": f"{m['train_loss']:.3f}", "test loss": f"{m['test_loss']:.3f}",
            "train acc (%)": f"{100 * m['train_acc']:.2f}", "test acc (%)": f"{100 * m['test_acc']:.2f}",
            "macro P (%)": f"{100 * m['macro_precision']:.2f}", "macro R (%)": f"{100 * m['macro_recall']:.2f}", "macro F1 (%)": f"{100 * m['macro_f1']:.2f}",
            "MFLOPs/img": f"{m['flops'] / 1e6:,.1f}", "train time (s)": f"{m['train_time_s']:.1f}", "images/s": f"{m['images_per_s']:,.0f}",
            "device": device_label(r["device"]), "precision": m["amp"], "date": r["created"][:10],
        })
    return pd.DataFrame(rows)


def readme_tables(records: list[dict]) -> str:
    """Markdown for the README: one results table per dataset that has records."""
    parts = []
    for key in DATASETS:
        table = results_table(records, key)
        if table.empty:
            continue
        sources = {r["data"]["title"] for (d, _), r in best_records(records).items() if d == key}
        # the cells are already formatted: tabulate must not re-parse them, only right-align the numeric columns
        align = ["left" if c in ("model", "profile", "device", "precision", "date") else "right" for c in table.columns]
        parts.append(f"#### {' / '.join(sorted(sources))}\n\n{table.to_markdown(index=False, disable_numparse=True, colalign=align)}\n")
    if not parts:
        return "_No run records yet: run the report command below._\n"
    note = ("Train loss and accuracy are running means over the selected epoch, on augmented batches and with label smoothing (which keeps "
            "that loss well above zero), so they are not comparable with the test columns; test metrics are from one evaluation of the "
            "validation-selected weights. `smoke` and `quick` rows are pipeline checks, not the report's numbers.\n")
    return "\n".join(parts) + "\n" + note


def notebook_index(entries: list[tuple[str, str]]) -> str:
    """A Markdown table of the report's notebooks, (file stem, title) each, with Colab badges."""
    rows = ["| notebook | what | Colab |", "|---|---|---|"]
    for stem, title in entries:
        url = f"https://colab.research.google.com/github/{REPOSITORY}/blob/main/notebooks/{stem}.ipynb"
        rows.append(f"| [`{stem}`](notebooks/{stem}.ipynb) | {title} | [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url}) |")
    return "\n".join(rows) + "\n"


def architecture_table() -> str:
    """The README's table of registered architectures: family, tier, minimum input, and size and FLOPs on both input kinds."""
    from .experiment import model_cost

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
    rows += [f"| `{p.name}` | {n(p.train_size)} ({n(p.heavy_train_size)}) | {p.val_size:,} | {n(p.test_size)} | {p.epochs} ({p.light_epochs}) | {p.batch_size} |" for p in PROFILES.values()]
    rows.append(f"\nLight models: {light}. Heavy models: {heavy}.")
    return "\n".join(rows) + "\n"


def runtime_table(records: list[dict], planned: int) -> str:
    """The README's table of report wall times per profile and device, from the runner's report-run records."""
    rows = ["| profile | device | notebooks timed | wall time, summed (min) | slowest notebook | last run |", "|---|---|---|---|---|---|"]
    runs = sorted((r for r in records if r["kind"] == "report" and r["metrics"].get("notebooks")), key=lambda r: PROFILES[r["profile"]].rank)
    for r in runs:
        times = {name: n["seconds"] for name, n in r["metrics"]["notebooks"].items()}
        slowest = max(times, key=times.get)
        rows.append(f"| `{r['profile']}` | {device_label(r['device'])} | {len(times)} of {planned} | {r['metrics']['total_s'] / 60:.1f} | "
                    f"`{slowest}` ({times[slowest]:,.0f} s) | {r['created'][:10]} |")
    if not runs:
        return "_No timed report runs yet._\n"
    return "\n".join(rows) + "\n\nEach notebook counts with its latest successful run (papermill execution, kernel start included).\n"


def update_readme(readme: Path, sections: dict[str, str]) -> bool:
    """Replace the README's generated sections (marked <!-- dnic:NAME:start/end -->); return True if it changed."""
    text = new = readme.read_text()
    for name, content in sections.items():
        start, end = f"<!-- dnic:{name}:start -->", f"<!-- dnic:{name}:end -->"
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
        if not pattern.search(new):
            raise ValueError(f"{readme} lacks the markers {start} … {end}")
        new = pattern.sub(lambda _: f"{start}\n{content}{end}", new)
    if new != text:
        atomic_write_bytes(readme, new.encode())
    return new != text


def config_line(cfg: RunConfig) -> str:
    """The training protocol of a run in one sentence."""
    images = "all" if cfg.train_size is None else f"{cfg.train_size:,}"
    return (f"{images} training images, {cfg.optimizer.upper()} (lr {cfg.lr:g}, weight decay {cfg.weight_decay:g}), {cfg.schedule} schedule, "
            f"label smoothing {cfg.label_smoothing:g}, batch {cfg.batch_size}, up to {cfg.epochs} epoch(s), "
            f"early-stopping patience {cfg.patience}, augmentation {'on' if cfg.augment else 'off'}, seed {cfg.seed}.")
