"""The deployment study of notebook 60: export the best model available, its parity with PyTorch, latency on this CPU, predictions."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
from PIL import Image

from . import plots
from .checkpoint import Trained, load_trained
from .config import number, whole
from .data import dataset_info, load_raw
from .errors import DnicError
from .export import export_run
from .metrics import median_ms
from .onnx_model import OnnxModel, card_val_acc, find_cards, load_model
from .records import load_records
from .settings import checkpoint_dir

PYTORCH, ONNXRUNTIME = "PyTorch eager", "onnxruntime"


def candidates(dataset: str, profile: str, max_size_mb: float) -> list[dict]:
    """Training records of the dataset in this profile whose checkpoint is here, best validation accuracy first.

    Only runs at default parameters and of at most max_size_mb count; the test split only reports the chosen model.
    """
    records = [r for r in load_records() if r["kind"] == "train" and r["profile"] == profile and r["config"]["dataset"] == dataset
               and not r["config"].get("variant") and r["metrics"]["size_mb"] <= max_size_mb
               and (checkpoint_dir(profile, r["name"]) / "best.pt").is_file()]
    return sorted(records, key=lambda r: -r["metrics"]["best_val_acc"])


@dataclass
class Deployment:
    """The model of the study on onnxruntime, its PyTorch original when a checkpoint is here, and how it was chosen."""

    model: OnnxModel
    trained: Trained | None  # None when a committed export is used: there is no checkpoint to compare with
    reason: str

    def parity_table(self) -> pd.DataFrame:
        """The export's parity check against PyTorch, as its card records it."""
        card, p = self.model.card, self.model.card["parity"]
        return pd.Series({
            "test images": f"{p['images']:,}", "same top class": f"{p['same_argmax']:,} of {p['images']:,}",
            "largest |logit difference|": f"{p['max_abs_diff']:.2e}", "tolerance": f"{p['tolerance']:g}",
            "test accuracy, exported model (%)": f"{100 * p['onnx_test_acc']:.2f}", "test accuracy, run record (%)": f"{100 * card['source'].get('test_acc', card['test_acc']):.2f}",
            "run record's test-time augmentation": card["source"].get("tta", "off"),
            "checked": card["exported"]["created"][:10],
        }, name=card["title"]).to_frame()

    @torch.inference_mode()
    def latency(self, batches: tuple[int, ...] = (1, 64), repeats: int = 20) -> pd.DataFrame:
        """Median time per batch of onnxruntime and (with a checkpoint) PyTorch eager, both from uint8 images, normalisation included."""
        whole(1)("repeats", repeats)
        rng = np.random.default_rng(0)
        rows = []
        for batch in batches:
            x = rng.integers(0, 256, (batch, self.model.channels, self.model.size, self.model.size), dtype=np.uint8)
            engines = {ONNXRUNTIME: lambda: self.model.logits(x)}
            if self.trained is not None:
                trained, xt = self.trained, torch.from_numpy(x)
                engines[PYTORCH] = lambda: trained.model(trained.preprocess(xt))
            for engine, step in engines.items():
                ms = median_ms(step, repeats)
                rows.append({"engine": engine, "batch": batch, "median ms per batch": round(ms, 3), "ms per image": round(ms / batch, 4),
                             "images/s": round(1000 * batch / ms)})
        return pd.DataFrame(rows)

    def predictions(self, data_dir: str | None, profile: str) -> plt.Figure:
        """The first test image of each class, each written as a PNG and classified through images.decode as predict and serve do; saved."""
        dataset = self.model.card["dataset"]
        raw = load_raw(dataset, data_dir)
        picks = [int(torch.nonzero(raw.test_y == c)[0]) for c in range(len(self.model.classes)) if (raw.test_y == c).any()]
        decoded = []
        for i in picks:
            buffer = io.BytesIO()
            Image.fromarray(raw.test_x[i].permute(1, 2, 0).squeeze(-1).numpy()).save(buffer, format="PNG")
            decoded.append(self.model.decode(buffer.getvalue(), f"test image {i}"))
        probs = self.model.probabilities(np.stack(decoded))
        classes = self.model.classes
        titles = [f"{classes[int(raw.test_y[i])]} → {classes[int(p.argmax())]}\n(p = {p.max():.2f})" for i, p in zip(picks, probs)]
        plots.set_style()
        fig = plots.image_grid(raw.test_x[picks], titles, ncols=min(len(picks), 5),
                               title=f"{self.model.card['title']} on onnxruntime: test images, true → predicted")
        return plots.saved(fig, f"{self.model.name}-deployment-predictions", profile)


def latency_figure(timings: pd.DataFrame, profile: str, name: str) -> plt.Figure:
    """Bars of milliseconds per image by batch size and engine; saved."""
    plots.set_style()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    sns.barplot(data=timings, x="batch", y="ms per image", hue="engine", ax=ax)
    ax.set(xlabel="batch size (images)", ylabel="median latency per image (ms)", title="Inference latency on this CPU")
    return plots.saved(fig, f"{name}-deployment-latency", profile)


def latency_summary(timings: pd.DataFrame) -> str:
    """One paragraph on the timings: onnxruntime against PyTorch eager at each batch size, or onnxruntime alone."""
    ms = timings.set_index(["engine", "batch"])["median ms per batch"]
    parts = []
    for batch in timings["batch"].unique():
        ort_ms = ms[(ONNXRUNTIME, batch)]
        if (PYTORCH, batch) in ms.index:
            ratio = ms[(PYTORCH, batch)] / ort_ms
            verdict = f"onnxruntime {ratio:.1f}× faster" if ratio >= 1 else f"onnxruntime {1 / ratio:.1f}× slower"
            parts.append(f"at batch {batch}, onnxruntime takes {ort_ms:.2f} ms and PyTorch eager {ms[(PYTORCH, batch)]:.2f} ms ({verdict})")
        else:
            parts.append(f"at batch {batch}, onnxruntime takes {ort_ms:.2f} ms ({ort_ms / batch:.3f} ms per image)")
    threads = torch.get_num_threads()
    return (f"Medians on this CPU with {threads} thread(s) for both engines, uint8 images in and logits out (normalisation included): "
            + "; ".join(parts) + ". Small batches show the fixed cost per call, large ones the arithmetic.")


def prepare(dataset: str, profile: str, max_size_mb: float, data_dir: str | None) -> Deployment:
    """Export the best model of the dataset whose checkpoint is here (this profile, at most max_size_mb), else use the best committed export."""
    number(0, math.inf, low_open=True)("max_size_mb", max_size_mb)
    title = dataset_info(dataset).title
    found = candidates(dataset, profile, max_size_mb)
    threads = torch.get_num_threads()  # the same threads as PyTorch, for a fair comparison
    if found:
        best = found[0]
        card = export_run(best["name"], profile, data_dir=data_dir)
        reason = (f"The {title} model of profile `{profile}` with a checkpoint here, at most {max_size_mb:g} MB of weights and the best "
                  f"validation accuracy ({best['metrics']['best_val_acc']:.2%}; chosen on validation, not test) is "
                  f"**{card['title']}** ({best['metrics']['test_acc']:.2%} test accuracy in its record, test-time augmentation "
                  f"{best['config'].get('tta') or 'off'}; {card['test_acc']:.2%} for the exported graph, one pass per image; {len(found)} candidate(s)). "
                  f"It was exported now to `results/{profile}/models/{card['onnx_file']}` ({card['size_mb']:.2f} MB), "
                  "and the parity check below ran during the export.")
        return Deployment(load_model(card["path"], threads), load_trained(best["name"], profile), reason)
    exports = [c for c in find_cards() if c["dataset"] == dataset and c["parity"]]
    if not exports:
        raise DnicError(f"No {title} model to deploy: no checkpoint of profile {profile!r} (at most {max_size_mb:g} MB) and no exported model.",
                        f"run a {title} model notebook in this profile first, or export one: python -m dnic_utils.export RUN.")
    exports = [c for c in exports if not c["superseded"]] or exports  # an export whose run was trained again only when no other is left
    top = [c for c in exports if c["profile"] == exports[0]["profile"]]  # find_cards lists the highest profile first
    card = max(top, key=card_val_acc)
    chosen = (f"the best validation accuracy of its run ({card_val_acc(card):.2%}; chosen on validation, not test)" if card_val_acc(card) >= 0
              else "no validation accuracy on its card (exported without a run record)")
    reason = (f"No {title} checkpoint of profile `{profile}` is here (checkpoints are not in the repository, so a fresh clone has none): "
              f"the committed export with {chosen}, **{card['title']}** (`results/{card['profile']}/models/{card['onnx_file']}`, profile "
              f"`{card['profile']}`, {card['test_acc']:.2%} test accuracy, one pass per image), is used. Its parity with PyTorch is the check made when it was exported, "
              "and the latency comparison below has no PyTorch side." + (f" It is out of date: {card['superseded']}." if card["superseded"] else ""))
    return Deployment(load_model(card["path"], threads), None, reason)

