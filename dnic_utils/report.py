"""The prose and small tables of one model notebook, formatted from its run: header, architecture, costs, discussion."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import pandas as pd

from .config import RunConfig, quiet_default, recipe_fields, tta_views
from .data import dataset_info, dataset_title, load_raw
from .devices import device_info, device_label
from .metrics import top_confusions
from .models import anatomy, build_model, model_spec
from .records import versions

if TYPE_CHECKING:
    from .experiment import Experiment


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


def peers(records: list[dict], cfg: RunConfig) -> list[dict]:
    """The records a run is compared with: other architectures on its dataset, same profile, default parameters."""
    return [r for r in records if r["kind"] == "train" and r["profile"] == cfg.profile and not r["config"].get("variant")
            and r["config"]["dataset"] == cfg.dataset and r["config"]["arch"] != cfg.arch]


def discussion(exp: Experiment, peers: list[dict] = ()) -> str:
    """A short discussion of a run, every number from the run itself or from the peer records passed in."""
    m, cfg = exp.metrics, exp.cfg
    mistakes = top_confusions(m["confusion"], exp.splits.classes)
    worst = exp.per_class().sort_values("f1-score").iloc[0]
    flip = exp.splits.info.flip

    def views(tta: str | None) -> str:
        """'' for a single pass, else how many test views an accuracy averaged, e.g. ' (6 test views)'."""
        n = tta_views(tta or "off", flip)
        return f" ({n} test views)" if n > 1 else ""

    augmented = f", averaging {tta_views(cfg.tta, flip)} views of each ({cfg.tta} test-time augmentation)" if cfg.tta != "off" else ""
    lines = [
        f"{exp.title} reached **{100 * m['test_acc']:.2f}%** test accuracy (macro F1 {100 * m['macro_f1']:.2f}%) "
        f"on {len(exp.y_true):,} test images{augmented}, with the weights of epoch {m['best_epoch']} of {m['epochs_run']} "
        f"selected on the validation split ({100 * m['best_val_acc']:.2f}% there).",
        f"Training took {m['train_time_s']:.1f} s at {m['images_per_s']:,.0f} images/s ({m['amp']}); "
        f"one forward pass of a single image takes {m['latency_ms'][min(m['latency_ms'])]:.2f} ms on this device.",
        f"The hardest class is *{worst.name}* (F1 {100 * worst['f1-score']:.1f}%).",
    ]
    if mistakes:
        listed = ", ".join(f"{t} → {p} ({n})" for t, p, n in mistakes)
        lines.append(f"The most frequent confusions are {listed}.")
    if exp.model_notes:
        lines.append(exp.model_notes)
    if peers:
        listed = ", ".join(f"{r['arch_title']} {100 * r['metrics']['test_acc']:.2f}%{views(r['config'].get('tta'))}"
                           for r in sorted(peers, key=lambda r: -r["metrics"]["test_acc"]))
        lines.append(f"For comparison, the records of the same `{cfg.profile}` profile when this notebook ran: {listed}. Notebook 50 "
                     "compares them all, with significance tests.")
    budget = f"{cfg.epochs} epoch(s) on {len(exp.splits.train_y):,} training images"
    if cfg.profile == "budget":
        lines.append(f"These are `budget`-profile numbers ({budget}, the same for every architecture on this dataset): a comparison "
                     "at equal passes over the same data on a CPU (not equal compute: a larger net spends more per image), not what the "
                     "architecture can reach with a longer schedule.")
    elif cfg.profile != "full":
        lines.append(f"These are `{cfg.profile}`-profile numbers ({budget}): they show the pipeline works, not what the "
                     "architecture can reach; the `budget` profile gives the report's CPU numbers, `full` its GPU ones.")
    return "\n\n".join(lines)


def config_line(cfg: RunConfig) -> str:
    """The training protocol of a run in one sentence: every recipe field, as RunConfig labels it."""
    def shown(value: object) -> object:
        """'all' for a size left as None, 'on'/'off' for a flag, thousands separators for a count."""
        if value is None or isinstance(value, bool):
            return "all" if value is None else "on" if value else "off"
        return f"{value:,}" if isinstance(value, int) else value

    fields = [f for f in recipe_fields() if not quiet_default(f.name, getattr(cfg, f.name))]
    text = ", ".join(f.metadata["label"].format(shown(getattr(cfg, f.name))) for f in fields)
    return text[0].upper() + text[1:] + "."
