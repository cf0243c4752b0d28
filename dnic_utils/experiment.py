"""One model-on-dataset run end to end: data, model, fit, a single test evaluation, record and figures."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import torch
from torch import nn

from . import plots
from .checkpoint import save_trained
from .config import PROFILES, RunConfig
from .data import DatasetInfo, Splits, dataset_title, load_splits
from .data.batches import Augment
from .data.splits import EVAL_BATCH, Loaders
from .data.subsets import transfer_splits
from .devices import amp_dtype, amp_label, cpu_wait, sched_times, wait_pct
from .metrics import classification_metrics, inference_latency, per_class_report
from .models import build_model, model_cost, model_fingerprint, model_size, model_spec
from .records import encode_predictions, git_commit, make_record, read_record, write_record
from .settings import checkpoint_dir
from .train import evaluate, fit, seed_everything
from .transfer.apply import apply_transfer, load_source

DATA_INIT_IMAGES = 5_000  # training images an architecture's data-dependent initialisation sees


@dataclass
class Experiment:
    """A finished run: its config, data, trained model, history, test predictions, metrics and record."""

    cfg: RunConfig
    splits: Splits
    model: nn.Module
    history: list[dict]
    curve: list[dict]
    y_true: torch.Tensor
    y_pred: torch.Tensor
    confidence: torch.Tensor  # the softmax probability of each test prediction
    metrics: dict
    record: dict
    record_path: Path
    model_notes: str | None = None  # the registry's describe_trained text, for nets that have one

    @property
    def name(self) -> str:
        """The stable name of the run, used for its record, checkpoints and figures."""
        return self.cfg.run_name

    @property
    def title(self) -> str:
        """'ResNet18 on CIFAR-10 (JPEG q75 copy)', with ' (flip TTA)' or ' (multiview TTA)' when the test used it."""
        tta = f" ({self.cfg.tta} TTA)" if self.cfg.tta != "off" else ""
        return f"{model_spec(self.cfg.arch).title}{tta} on {dataset_title(self.splits.info, self.splits.source)}"

    def history_table(self) -> pd.DataFrame:
        """The per-epoch history as a table."""
        return pd.DataFrame(self.history).set_index("epoch")

    def per_class(self) -> pd.DataFrame:
        """Per-class precision, recall and F1 on the test set."""
        return per_class_report(self.y_true, self.y_pred, self.splits.classes).astype({"support": int})

    def summary_table(self) -> pd.DataFrame:
        """The headline metrics of the run as a one-column table of formatted values."""
        m = self.metrics
        rows = {
            "test accuracy (%)": f"{100 * m['test_acc']:.2f}", "test loss": f"{m['test_loss']:.4f}",
            "macro precision (%)": f"{100 * m['macro_precision']:.2f}", "macro recall (%)": f"{100 * m['macro_recall']:.2f}",
            "macro F1 (%)": f"{100 * m['macro_f1']:.2f}", "best validation accuracy (%)": f"{100 * m['best_val_acc']:.2f}",
            "selected epoch": f"{m['best_epoch']} of {m['epochs_run']}", "precision": m["amp"],
            "train time (s)": f"{m['train_time_s']:.1f}", "training images/s": f"{m['images_per_s']:,.0f}",
            "waited for a CPU while training (%)": wait_pct(m.get("train_cpu_wait")),
            **{f"latency @ batch {b} (ms)": f"{v:.2f}" for b, v in m["latency_ms"].items()},
        }
        return pd.Series(rows, name=self.title).to_frame()

    def save_figures(self) -> dict[str, plt.Figure]:
        """Make, save under figures/<profile>/ and return the run's curves, confusion matrix and mistakes."""
        plots.set_style()
        test_x = self.splits.test_x
        figures = {
            "curves": plots.curves(self.history, self.curve, self.title),
            "confusion": plots.confusion(self.metrics["confusion"], self.splits.classes, f"{self.title}: test confusion matrix"),
            "misclassified": plots.misclassified(test_x, self.y_true, self.y_pred, self.confidence, self.splits.classes,
                                                 title=f"{self.title}: the most confident mistakes (true → predicted)"),
        }
        for kind, fig in figures.items():
            plots.saved(fig, f"{self.name}-{kind}", self.cfg.profile)
        return figures


def training_cpu_wait(history: list[dict]) -> float | None:
    """The waited share of the run's runnable training time, its epochs weighted by their training time (None if an epoch lacks it)."""
    waits = [row.get("cpu_wait") for row in history]
    if not waits or any(w is None for w in waits):
        return None
    return sum(w * row["train_time_s"] for w, row in zip(waits, history)) / sum(row["train_time_s"] for row in history)


def run_augment(cfg: RunConfig, info: DatasetInfo) -> Augment | None:
    """The training augmentation a run's config asks for on a dataset (None when it asks for none): the one place it is built."""
    return Augment(pad=cfg.translate, degrees=cfg.rotation, flip=info.flip, alternate=cfg.alternate_flips) if cfg.augment else None


def run_loaders(splits: Splits, cfg: RunConfig) -> Loaders:
    """The train, validation and test loaders of a run: the one place a run's loaders are built."""
    augment = run_augment(cfg, splits.info)
    size = cfg.image_size
    return Loaders(splits.loader("train", cfg.batch_size, cfg.device, train=True, augment=augment, seed=cfg.seed, image_size=size),
                   splits.loader("val", EVAL_BATCH, cfg.device, image_size=size), splits.loader("test", EVAL_BATCH, cfg.device, image_size=size))


def model_for_run(cfg: RunConfig, splits: Splits, loaders: Loaders) -> nn.Module:
    """The run's freshly built model on its device (channels_last), with any data-dependent weights set from training images."""
    info = splits.info
    size = cfg.image_size or info.size
    model = build_model(cfg.arch, len(info.classes), info.channels, size).to(cfg.device, memory_format=torch.channels_last)
    if cfg.compile:
        model.compile()  # in place, so state_dict keys and checkpoints stay those of the plain model
    init = model_spec(cfg.arch).init_from_data
    if init:  # weights computed from training images before training (FastNet's whitening filters)
        init(model, loaders.train.images(DATA_INIT_IMAGES))
    return model


def run(cfg: RunConfig, data_dir: str | None = None, resume: bool = True, latency: bool = True) -> Experiment:
    """Train cfg.arch on cfg.dataset, select the best validation epoch, test once, save the trained model and write the run record.

    latency=False leaves out the inference-latency measurement (the profile's batches, six passes each): studies whose tables never
    show it save those passes on every run.
    """
    start = time.perf_counter()
    seed_everything(cfg.seed)  # before the model is built, so the seed fixes the initial weights too
    splits = transfer_splits(load_splits(cfg.dataset, cfg.train_size, cfg.val_size, cfg.test_size, data_dir), cfg.classes,
                             cfg.labels_per_class, cfg.grey_as_rgb)
    info, spec, name = splits.info, model_spec(cfg.arch), cfg.run_name
    size = cfg.image_size or info.size
    source = load_source(cfg.source, cfg.arch, cfg.profile, len(info.classes)) if cfg.source else None
    if source:  # inputs normalised as the source's weights were trained
        splits.mean, splits.std = source.mean, source.std
    loaders = run_loaders(splits, cfg)
    model = model_for_run(cfg, splits, loaders)
    transfer = apply_transfer(model, cfg, source) if source else None  # after any data-set weights: copied stages replace them
    reported = read_record(cfg.profile, name)
    folder = checkpoint_dir(cfg.profile, name)
    data_id = splits.data_id + (f":{source.provenance['sha256']}" if source else "")  # other source weights: train afresh
    fitted = fit(model, loaders.train, loaders.val, cfg, folder, resume=resume, data_id=data_id,
                 reported_id=reported.get("checkpoint_id") if reported else None)
    data = {"dataset": cfg.dataset, "title": dataset_title(info, splits.source), **splits.source, "sizes": splits.sizes(), "mean": splits.mean, "std": splits.std}
    save_trained(folder / "best.pt", model.state_dict(), {
        "arch": cfg.arch, "arch_title": spec.title, "classes": list(info.classes), "in_channels": info.channels, "image_size": size,
        "mean": list(splits.mean), "std": list(splits.std), "dataset": cfg.dataset, "dataset_title": data["title"], "data_sha256": splits.source.get("sha256"),
        "run_name": name, "profile": cfg.profile, "git_commit": git_commit(), "epoch": fitted.best["epoch"], "val_acc": fitted.best["val_acc"],
        "fingerprint": model_fingerprint(cfg.arch, model), "config": cfg.to_dict(),
    })
    amp = amp_dtype(cfg.amp, cfg.device)
    test = evaluate(model, loaders.test, amp, cfg.tta, info.flip)  # the only look at the test set
    notes = spec.describe_trained(model, loaders.val.images(EVAL_BATCH)) if spec.describe_trained else None  # spread over the classes
    history, best = fitted.history, fitted.best
    shape = (info.channels, size, size)
    sched = sched_times()
    latency_ms = {b: inference_latency(model, shape, b, cfg.device, amp) for b in PROFILES[cfg.profile].latency_batches} if latency else {}
    latency_wait = cpu_wait(sched, sched_times()) if latency else None
    metrics = {
        "test_loss": test["loss"],
        "test_acc": test["acc"],
        **{k: v for k, v in classification_metrics(test["y_true"], test["y_pred"], info.classes).items() if k != "accuracy"},
        "train_loss": best["train_loss"],
        "train_acc": best["train_acc"],
        "best_val_acc": best["val_acc"],
        "best_epoch": best["epoch"],
        "epochs_run": len(history),
        "train_time_s": sum(row["train_time_s"] for row in history),
        "images_per_s": sum(r["images_per_s"] * r["train_time_s"] for r in history) / sum(r["train_time_s"] for r in history),
        "train_cpu_wait": training_cpu_wait(history),
        "latency_ms": latency_ms,
        "latency_cpu_wait": latency_wait,
        "amp": amp_label(amp),
        "tta": cfg.tta,
        **model_cost(cfg.arch, len(info.classes), info.channels, size),
        **model_size(model),  # as trained: stages a transfer run froze are not trainable
    }
    record = make_record("train", name, cfg.profile, cfg.to_dict(), metrics, device=cfg.device, data=data, seed=cfg.seed,
                         wall_time_s=time.perf_counter() - start, history=history, curve=fitted.curve, arch_title=spec.title, checkpoint_id=fitted.run_id,
                         resumes=fitted.resumes, model_notes=notes, transfer=transfer, predictions=encode_predictions(test["y_true"], test["y_pred"], test["confidence"]))
    path = write_record(record)
    return Experiment(cfg, splits, model, history, fitted.curve, test["y_true"], test["y_pred"], test["confidence"], metrics, record, path, notes)
