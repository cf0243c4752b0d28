"""Export a trained run to ONNX with a JSON model card, after checking it against PyTorch on the run's whole test set.

Usage: python -m dnic_utils.export RUN [--profile P] [--out DIR] [--data-dir DIR]

The graph takes uint8 images (batch, C, H, W) at the run's image size and colour and normalises them itself (x / 255,
then the run's per-channel mean and std), so a caller only decodes, converts and resizes. Nothing is written unless
onnxruntime gives PyTorch's top class on every test image and logits within TOLERANCE of PyTorch's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import Trained, load_trained
from .cli import refuse
from .config import PROFILES
from .data import dataset_info, dataset_title, load_splits
from .data.subsets import transfer_splits
from .devices import device_label
from .errors import DnicError
from .files import atomic_write_bytes
from .models import build_model, model_spec
from .onnx_model import CARD_FORMAT, session_from_bytes
from .records import git_commit, read_record, results_dir, same_run, utc_now

TOLERANCE = 1e-3  # the largest |logit difference| between onnxruntime and PyTorch an export may show (fp32 both)
PARITY_BATCH = 512
INPUT, OUTPUT = "images", "logits"


class Normalising(nn.Module):
    """A trained model behind the normalisation of its training: uint8 images in, logits out."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float]) -> None:
        """Wrap `model`; mean and std are per channel, for pixels scaled to [0, 1]."""
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of uint8 images (N, C, H, W), normalised as Trained.preprocess does."""
        return self.model((images.float().div(255) - self.mean) / self.std)


def onnx_bytes(trained: Trained) -> bytes:
    """The ONNX graph (current exporter, dynamo=True) of a trained model with its normalisation inside; the batch dimension is dynamic."""
    meta = trained.meta
    wrapped = Normalising(trained.model, meta["mean"], meta["std"]).eval()
    example = torch.zeros(2, meta["in_channels"], meta["image_size"], meta["image_size"], dtype=torch.uint8)
    program = torch.onnx.export(wrapped, (example,), dynamo=True, input_names=[INPUT], output_names=[OUTPUT],
                                dynamic_shapes={INPUT: {0: torch.export.Dim("batch")}}, verbose=False)
    proto = program.model_proto
    for node in proto.graph.node:  # the exporter's debug metadata holds stack traces with this machine's paths: not shipped
        kept = [p for p in node.metadata_props if not p.key.startswith("pkg.torch.onnx.")]
        del node.metadata_props[:]
        node.metadata_props.extend(kept)
    return proto.SerializeToString()


@torch.inference_mode()
def parity(trained: Trained, session: object, images: torch.Tensor, labels: torch.Tensor) -> dict:
    """PyTorch (Trained.preprocess, then the model, fp32) against onnxruntime on the same uint8 images: agreement, largest logit gap, accuracy."""
    ours, theirs, size = [], [], trained.meta["image_size"]
    for start in range(0, len(images), PARITY_BATCH):
        batch = images[start : start + PARITY_BATCH]
        if batch.shape[-1] != size:  # a run trained on resized inputs (image_size): the graph takes images resized to its size beforehand
            batch = F.interpolate(batch.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True).round_().to(torch.uint8)
        batch = batch.contiguous()
        ours.append(trained.model(trained.preprocess(batch)).float())
        theirs.append(torch.from_numpy(session.run(None, {INPUT: batch.numpy()})[0]))
    a, b = torch.cat(ours), torch.cat(theirs)
    return {"images": len(images), "same_argmax": int((a.argmax(1) == b.argmax(1)).sum()), "max_abs_diff": float((a - b).abs().max()),
            "tolerance": TOLERANCE, "onnx_test_acc": float((b.argmax(1) == labels).float().mean())}


def model_card(trained: Trained, onnx: bytes, *, source: dict | None, test_acc: float | None, parity: dict | None) -> dict:
    """The JSON card written beside an ONNX file: what goes in and out, the classes, the normalisation, where it came from, its checks."""
    meta = trained.meta
    channels, size, name = meta["in_channels"], meta["image_size"], meta["run_name"]
    return {
        "format": CARD_FORMAT, "name": name, "title": f"{meta['arch_title']} on {meta['dataset_title']}", "arch": meta["arch"],
        "dataset": meta["dataset"], "profile": meta["profile"], "classes": list(meta["classes"]),
        "input": {"name": INPUT, "dtype": "uint8", "shape": ["batch", channels, size, size], "colour": "grey" if channels == 1 else "RGB",
                  "values": "0-255, not normalised: the graph normalises"},
        "output": {"name": OUTPUT, "dtype": "float32", "shape": ["batch", len(meta["classes"])], "values": "logits: a softmax gives the class probabilities"},
        "normalisation": {"mean": list(meta["mean"]), "std": list(meta["std"]), "where": "inside the graph: (images / 255 - mean) / std, per channel"},
        "preprocessing": f"outside the graph: decode, convert to {'grey (ITU-R 601 luma)' if channels == 1 else 'RGB'}, "
                         f"resize to {size}×{size} (bilinear, antialiased): dnic_utils.images.decode",
        "onnx_file": f"{name}.onnx", "sha256": hashlib.sha256(onnx).hexdigest(), "size_mb": round(len(onnx) / 1e6, 3),
        "source": source, "test_acc": test_acc, "parity": parity,
        "exported": {"created": utc_now(), "git_commit": git_commit(),
                     "exporter": "torch.onnx.export(dynamo=True)", "torch": torch.__version__},
    }


def write_export(folder: Path, onnx: bytes, card: dict) -> Path:
    """Write <name>.onnx, then its card <name>.json, atomically; return the card's path."""
    atomic_write_bytes(folder / card["onnx_file"], onnx)
    path = folder / f"{card['name']}.json"
    atomic_write_bytes(path, (json.dumps(card, indent=1) + "\n").encode())
    return path


def source_record(meta: dict) -> dict:
    """The run record of a trained model, checked to come from the same run as its weights."""
    profile, name = meta["profile"], meta["run_name"]
    record = read_record(profile, name)
    if record is None:
        raise DnicError(f"No run record results/{profile}/{name}.json for the trained model of {name}.",
                        "rerun the run's notebook: it writes the record the card takes its test accuracy and provenance from.")
    if not same_run(record, meta):
        raise DnicError(f"The record results/{profile}/{name}.json and checkpoints/{profile}/{name}/best.pt come from different runs.",
                        "rerun the run's notebook, so that both are written by one run.")
    return record


def export_run(run: str, profile: str | None = None, out: Path | None = None, data_dir: str | None = None) -> dict:
    """Export a run's trained model to <out>/<run>.onnx + <run>.json (default results/<profile>/models/) after the parity check; return the card."""
    trained = load_trained(run, profile)
    meta, cfg = trained.meta, trained.meta["config"]
    record = source_record(meta)
    # the test images and labels as the run saw them: one half of a class split, grey images made RGB (its size: in parity)
    splits = transfer_splits(load_splits(meta["dataset"], cfg["train_size"], cfg["val_size"], cfg["test_size"], data_dir),
                             cfg.get("classes"), None, cfg.get("grey_as_rgb", False))
    onnx = onnx_bytes(trained)
    check = parity(trained, session_from_bytes(onnx), splits.test_x, splits.test_y)
    check["test_set"] = f"{dataset_title(splits.info, splits.source)}: {len(splits.test_y):,} test images, sha256 {splits.source.get('sha256')}"
    if check["same_argmax"] != check["images"] or check["max_abs_diff"] > TOLERANCE:
        raise DnicError(f"The ONNX export of {meta['run_name']} disagrees with PyTorch: the same top class on {check['same_argmax']:,} of "
                        f"{check['images']:,} test images, largest |logit difference| {check['max_abs_diff']:.3g} (tolerance {TOLERANCE:g}).",
                        "nothing was written; report it with the architecture and the torch and onnxscript versions.")
    source = {"run": meta["run_name"], "profile": meta["profile"], "record": f"results/{meta['profile']}/{meta['run_name']}.json",
              "git_commit": record["git_commit"], "device": device_label(record["device"]), "created": record["created"],
              "epoch": meta["epoch"], "tta": cfg.get("tta", "off")}
    # the card's accuracy is the exported graph's own (one pass per image); the record's may average test-time views (source.tta)
    source["test_acc"] = record["metrics"]["test_acc"]
    source["val_acc"] = record["metrics"].get("best_val_acc")  # what a deployment chooses by: never the test accuracy
    source["checkpoint_id"] = record.get("checkpoint_id")  # names the training run: a later training of the run has another
    card = model_card(trained, onnx, source=source, test_acc=check["onnx_test_acc"], parity=check)
    path = write_export(out or results_dir(meta["profile"]) / "models", onnx, card)
    return {**card, "path": str(path)}


def untrained(arch: str, dataset: str) -> Trained:
    """A freshly initialised model for a dataset's input and classes (random weights, normalisation 0.5 ± 0.25): for tests and load benchmarks."""
    info, spec = dataset_info(dataset), model_spec(arch)
    model = build_model(arch, len(info.classes), info.channels, info.size).eval()
    meta = {"arch": arch, "arch_title": f"{spec.title} (untrained)", "classes": list(info.classes), "in_channels": info.channels,
            "image_size": info.size, "mean": [0.5] * info.channels, "std": [0.25] * info.channels, "dataset": info.key,
            "dataset_title": info.title, "run_name": f"{info.key}-{arch}-untrained", "profile": None}
    return Trained(model, meta)


def export_untrained(arch: str, dataset: str, folder: Path) -> Path:
    """Export an untrained model (no record, no parity, no test accuracy) to folder; return its card's path."""
    trained = untrained(arch, dataset)
    onnx = onnx_bytes(trained)
    return write_export(folder, onnx, model_card(trained, onnx, source=None, test_acc=None, parity=None))


def describe(card: dict) -> str:
    """Two lines on an export: what and where, and its parity check against PyTorch."""
    p = card["parity"]
    return (f"exported {card['name']} ({card['title']}, profile {card['profile']}) to {Path(card['path']).with_suffix('.onnx')} "
            f"({card['size_mb']:.2f} MB) and its card {Path(card['path']).name}\n"
            f"parity on {p['images']:,} test images: the same top class on {p['same_argmax']:,}, largest |logit difference| "
            f"{p['max_abs_diff']:.2g} (tolerance {p['tolerance']:g}); test accuracy {p['onnx_test_acc']:.2%} exported (one pass per image), "
            f"{card['source']['test_acc']:.2%} in the record (test-time augmentation {card['source']['tta']})")


def main(argv: list[str] | None = None) -> int:
    """Export one run; bad input prints one 'error: …' line and returns 2."""
    parser = argparse.ArgumentParser(prog="python -m dnic_utils.export", description=__doc__.splitlines()[0])
    parser.add_argument("run", help="run name, e.g. cifar10-lenet5, or a best.pt path")
    parser.add_argument("--profile", choices=list(PROFILES), help="the run's profile (default: the highest that has a checkpoint of the run)")
    parser.add_argument("--out", type=Path, help="folder for RUN.onnx and RUN.json (default: results/<profile>/models/)")
    parser.add_argument("--data-dir", help="offline data root for the parity check (default: DNIC_DATA_DIR)")
    args = parser.parse_args(argv)
    try:
        card = export_run(args.run, args.profile, args.out, args.data_dir)
    except DnicError as err:
        return refuse(err)
    print(describe(card))
    return 0


if __name__ == "__main__":
    sys.exit(main())
