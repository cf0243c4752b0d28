"""Training images/s of the dnic_utils on-device loader against the conventional torchvision pipeline.

Both pipelines train the same freshly built model with the same optimizer, precision, batch size and number
of steps, in one run, on whatever device is present. The conventional one is what people usually write: a
torchvision-style Dataset returning PIL images, per-sample transforms (RandomCrop with padding, horizontal
flip, small rotation, ToTensor, Normalize) and a DataLoader with worker processes.

    python benchmarks/loader_throughput.py [--dataset cifar10] [--arch lenet5 resnet18] [--steps 40]

Prints images/s for both and the ratio, writes a run record (results/<profile>/bench-loader-*.json) and
regenerates benchmarks/RESULTS.md from all such records.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from dnic_utils.config import default_device, resolve_profile
from dnic_utils.data import BatchLoader, Splits, dataset_info, dataset_title, default_augment, load_splits
from dnic_utils.errors import DnicError
from dnic_utils.models import build_model
from dnic_utils.records import atomic_write_bytes, load_records, make_record, write_record
from dnic_utils.report import device_label
from dnic_utils.train import amp_dtype, amp_label, autocast, seed_everything

RESULTS_MD = Path(__file__).with_name("RESULTS.md")


class PILDataset(Dataset):
    """The conventional dataset: one uint8 image at a time, turned into a PIL image and transformed."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.x = x.permute(0, 2, 3, 1).squeeze(-1).numpy() if x.shape[1] == 1 else x.permute(0, 2, 3, 1).numpy()
        self.y = y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        """Number of images."""
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        """One transformed image and its label."""
        return self.transform(Image.fromarray(self.x[i])), self.y[i]


def conventional_loader(splits: Splits, batch_size: int, workers: int, device: str) -> DataLoader:
    """A DataLoader with workers and per-sample PIL transforms equivalent to dnic's augmentation."""
    aug = default_augment(splits.info)
    steps = [transforms.RandomCrop(splits.info.size, padding=aug.pad)]
    if aug.flip:
        steps.append(transforms.RandomHorizontalFlip())
    steps += [transforms.RandomRotation(aug.degrees), transforms.ToTensor(), transforms.Normalize(splits.mean, splits.std)]
    ds = PILDataset(splits.train_x, splits.train_y, transforms.Compose(steps))
    return DataLoader(ds, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
                      pin_memory=device.startswith("cuda"), persistent_workers=workers > 0)


def images_per_s(model: nn.Module, batches: Iterable, steps: int, warmup: int, device: str, amp: torch.dtype | None) -> float:
    """Train for warmup + steps batches and return images/s over the timed steps (data loading included)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    model.train()
    seen, start, it = 0, None, iter(batches)
    for step in range(warmup + steps):
        if step == warmup:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
        x, y = next(it)
        x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        y = y.to(device, non_blocking=True)
        with autocast(device, amp):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step >= warmup:
            seen += len(y)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def write_results_md() -> None:
    """Regenerate benchmarks/RESULTS.md from every loader-benchmark record."""
    rows = ["| date | device | profile | dataset | model | batch | steps | conventional img/s | dnic img/s | ratio | torch | torchvision |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted((r for r in load_records() if r["kind"] == "benchmark" and r["name"].startswith("bench-loader")), key=lambda r: r["created"]):
        c = r["config"]
        for arch, m in r["metrics"].items():
            rows.append(f"| {r['created'][:10]} | {device_label(r['device'])} | {r['profile']} | {r['data']['title']} | {arch} | {c['batch_size']} | {c['steps']} "
                        f"| {m['conventional']:,.0f} | {m['dnic']:,.0f} | **{m['ratio']:.2f}×** | {r['versions']['torch']} | {r['versions']['torchvision']} |")
    text = ("# Benchmark results\n\nGenerated by `benchmarks/loader_throughput.py` from the run records under `results/`; "
            "do not edit by hand.\n\n## Data pipeline: training images/s, dnic_utils loader vs conventional DataLoader\n\n" + "\n".join(rows) + "\n")
    atomic_write_bytes(RESULTS_MD, text.encode())


def main() -> None:
    """Measure both pipelines for each model, print the ratio, record it and regenerate RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--arch", nargs="+", default=["lenet5", "resnet18"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    start = time.perf_counter()
    device, profile = default_device(), resolve_profile("auto").name
    amp = amp_dtype("auto", device)
    splits = load_splits(args.dataset, root=args.data_dir)
    info = dataset_info(args.dataset)
    results = {}
    print(f"{dataset_title(info, splits.source)} on {device} ({amp_label(amp)}), batch {args.batch_size}, {args.steps} timed steps, {args.workers} workers")
    for arch in args.arch:
        speeds = {}
        for name in ("conventional", "dnic"):
            seed_everything(0)
            model = build_model(arch, len(info.classes), info.channels, info.size).to(device, memory_format=torch.channels_last)
            if name == "dnic":
                batches = BatchLoader(splits.train_x, splits.train_y, args.batch_size, splits.mean, splits.std, device=device, shuffle=True,
                                      augment=default_augment(info), drop_last=True, channels_last=True)
            else:
                batches = conventional_loader(splits, args.batch_size, args.workers, device)
            speeds[name] = images_per_s(model, batches, args.steps, args.warmup, device, amp)
            del batches
        speeds["ratio"] = speeds["dnic"] / speeds["conventional"]
        results[arch] = speeds
        print(f"{arch:>10}: conventional {speeds['conventional']:8.0f} img/s | dnic {speeds['dnic']:8.0f} img/s | ratio b/a {speeds['ratio']:.2f}x", flush=True)
    cfg = {"dataset": args.dataset, "arch": args.arch, "steps": args.steps, "warmup": args.warmup, "batch_size": args.batch_size, "workers": args.workers,
           "amp": amp_label(amp)}
    data = {"title": dataset_title(info, splits.source), **splits.source}
    path = write_record(make_record("benchmark", f"bench-loader-{device}-{args.dataset}", profile, cfg, results, device=device, data=data,
                                    seed=0, wall_time_s=time.perf_counter() - start))
    write_results_md()
    print(f"record: {path}\nresults: {RESULTS_MD}")


if __name__ == "__main__":
    try:
        main()
    except DnicError as err:  # bad --arch, --dataset or data root: the message names the fix
        sys.exit(f"error: {err}")
