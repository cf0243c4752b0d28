"""The budget profile's epochs, measured: each architecture's training and evaluation speed on each dataset, and the
largest epoch count, the same for all three datasets, for which every model notebook fits the budget in hours.

    python benchmarks/budget.py [--hours 10] [--steps 5] [--data-dir DIR]

Each notebook's time is estimated as training (all training images less the validation split, per epoch), the
validation passes (the split per epoch, and the points within epochs), one test pass, and a fixed overhead (kernel
start, FLOP count, latency). Writes results/<profile>/bench-budget-<device model and precision>.json and regenerates
benchmarks/RESULTS.md; dnic_utils/config.py's budget profile takes its epochs from the record of a 2-core CPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from dnic_utils.config import PROFILES, make_config, resolve_profile
from dnic_utils.data import DATASETS, load_splits
from dnic_utils.devices import amp_dtype, amp_label, default_device, device_info, device_label, device_slug, synchronize
from dnic_utils.errors import DnicError
from dnic_utils.experiment import run_augment
from dnic_utils.models import REGISTRY
from dnic_utils.records import make_record
from dnic_utils.train import PROBE_POINTS, evaluate, probe_images

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed  # noqa: E402  (the benchmark's own timing helpers, one folder with this script)

OVERHEAD_S = 30.0  # per notebook: kernel start, FLOP count, latency, figures (about what a smoke notebook takes here)


def eval_images_per_s(model: torch.nn.Module, loader, device: str, amp: torch.dtype | None) -> float:
    """Images/s of one evaluation pass (after a warm-up pass)."""
    evaluate(model, loader, amp)
    synchronize(device)
    start = time.perf_counter()
    evaluate(model, loader, amp)
    synchronize(device)
    return len(loader.y) / (time.perf_counter() - start)


def notebook_seconds(speeds: dict, sizes: dict, epochs: int) -> float:
    """The estimated wall time of one model notebook at this many epochs."""
    evaluated = sizes["val"] * epochs + PROBE_POINTS * probe_images(sizes["val"]) + sizes["test"]
    return sizes["train"] * epochs / speeds["train"] + evaluated / speeds["eval"] + OVERHEAD_S


def plan(measured: dict[str, dict], sizes: dict[str, dict], hours: float) -> dict:
    """The largest common epoch count whose notebooks fit the hours, and the estimated hours per dataset at it."""
    def total(epochs: int) -> dict[str, float]:
        """Estimated hours per dataset at this many epochs."""
        return {d: sum(notebook_seconds(s, sizes[d], epochs) for s in archs.values()) / 3600 for d, archs in measured.items()}

    epochs = 1
    while sum(total(epochs + 1).values()) <= hours:
        epochs += 1
    return {"epochs": epochs, "fits": sum(total(epochs).values()) <= hours, "hours": total(epochs), "hours_limit": hours}


def main(argv: list[str] | None = None) -> int:
    """Measure every architecture on every dataset, write the record and print the plan."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=10.0, help="the budget for all model notebooks (default: %(default)s)")
    parser.add_argument("--steps", type=speed.int_at_least(1), default=5, help="timed training steps per net (default: %(default)s)")
    parser.add_argument("--warmup", type=speed.int_at_least(0), default=2, help="untimed steps first (default: %(default)s)")
    parser.add_argument("--arch", nargs="+", default=list(REGISTRY), help="default: every registered architecture")
    parser.add_argument("--data-dir", help="offline data root (default: DNIC_DATA_DIR)")
    parser.add_argument("--results-md", type=Path, default=speed.RESULTS_MD)
    args = parser.parse_args(argv)
    device, start = default_device(), time.perf_counter()
    amp = amp_dtype("auto", device)
    budget = PROFILES["budget"]
    try:
        measured, sizes, data = {}, {}, {}
        for dataset in DATASETS:
            splits = load_splits(dataset, budget.train_size, budget.val_size, budget.test_size, args.data_dir)
            sizes[dataset], data[dataset] = splits.sizes(), splits.source
            measured[dataset] = {}
            for arch in args.arch:
                model = speed.fresh_model(arch, splits, device)
                train = speed.images_per_s(model, speed.cycle(splits.loader("train", budget.batch_size, device, train=True, augment=run_augment(make_config(arch, dataset, "budget", device=device), splits.info))), args.steps,
                                           args.warmup, device, amp)
                probe = splits.loader("val", 512, device).subset(torch.arange(512))
                measured[dataset][arch] = {"train": train, "eval": eval_images_per_s(model, probe, device, amp)}
                print(f"{dataset:>13} {arch:>24}: train {train:8,.1f} img/s, eval {measured[dataset][arch]['eval']:8,.1f} img/s", flush=True)
    except DnicError as err:
        print(f"error: {err.problem} Fix: {err.fix}", file=sys.stderr)
        return 2
    result = plan(measured, sizes, args.hours)
    verdict = "fit" if result["fits"] else "do not fit"  # one epoch is the least; it may be over the budget
    print(f"{device_label(device_info(device))} ({amp_label(amp)}): {result['epochs']} epoch(s) per dataset, "
          f"{sum(result['hours'].values()):.2f} h in all, {verdict} {args.hours:g} h: "
          + ", ".join(f"{d} {h:.2f} h" for d, h in result["hours"].items()))
    config = {"hours": args.hours, "steps": args.steps, "warmup": args.warmup, "batch_size": budget.batch_size, "amp": amp_label(amp),
              "overhead_s": OVERHEAD_S, "sizes": sizes}
    speed.publish(make_record("benchmark", f"bench-budget-{device_slug(device, amp_label(amp))}", resolve_profile("auto").name, config,
                              {"speeds": measured, "plan": result}, device=device, data=data, seed=0, wall_time_s=time.perf_counter() - start), args.results_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
