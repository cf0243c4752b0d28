"""Profile one training step on the device: images/s of ResNet18 and FastNet on CIFAR-10 as each setting of the step
changes (batch size, memory format, threads, torch.compile), and the operators that take the baseline step's time.

    python benchmarks/step.py [--arch resnet18 fastnet] [--batch-sizes 256 512] [--steps 5] [--warmup 2] [--data-dir DIR]

The baseline is the training path as the budget profile runs it: its batch size, channels_last, every core, eager, in the
precision training uses here. Each variant changes one of these, and the baseline is timed again at the end, so that the
spread between its two timings shows what a difference has to exceed to count. images/s come from speed.images_per_s (the
loop the MFU section times, data loading and augmentation included). The warm-up steps' seconds are kept too: torch.compile
spends them compiling. Writes results/<profile>/bench-step-<device model and precision>.json and regenerates benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from dnic_utils.config import PROFILES, make_config, resolve_profile
from dnic_utils.data import dataset_title, load_splits
from dnic_utils.devices import amp_dtype, amp_label, autocast, default_device, device_slug
from dnic_utils.errors import DnicError
from dnic_utils.models import model_spec
from dnic_utils.records import make_record
from dnic_utils.train import make_optimizer

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed  # noqa: E402  (the benchmark's own timing loop, one folder with this script)

DATASET = "cifar10"
TOP_OPERATORS = 8  # rows of the profiler's table kept per net


def variants(batch_size: int, batch_sizes: list[int], cores: int, compile_too: bool = True) -> list[dict]:
    """The baseline, then one change each: the batch sizes, contiguous memory, one thread (where there are more), compile; the baseline again."""
    base = {"name": "baseline", "batch_size": batch_size, "channels_last": True, "threads": cores, "compile": False}
    changed = [{**base, "name": f"batch {b}", "batch_size": b} for b in batch_sizes if b != base["batch_size"]]
    changed.append({**base, "name": "contiguous (NCHW)", "channels_last": False})
    if cores > 1:
        changed.append({**base, "name": "1 thread", "threads": 1})
    if compile_too:
        changed.append({**base, "name": "torch.compile", "compile": True})
    return [base, *changed, {**base, "name": "baseline again"}]


def measure(arch: str, variant: dict, splits, device: str, amp: torch.dtype | None, steps: int, warmup: int) -> dict:
    """images/s of the timed steps of one variant, and the seconds its warm-up steps took (compilation included)."""
    memory = torch.channels_last if variant["channels_last"] else torch.contiguous_format
    threads = torch.get_num_threads()
    torch.set_num_threads(variant["threads"])
    try:
        model = speed.fresh_model(arch, splits, device, memory_format=memory)
        if variant["compile"]:
            model.compile()
        batches = speed.cycle(splits.loader("train", variant["batch_size"], device, train=True, augment=speed.report_augment(splits)))
        start = time.perf_counter()
        rate = speed.images_per_s(model, batches, steps, warmup, device, amp, memory_format=memory)
        total = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    return {**variant, "images_per_s": rate, "warmup_s": total - steps * variant["batch_size"] / rate}


def operators(arch: str, splits, device: str, amp: torch.dtype | None, batch_size: int, steps: int = 2) -> list[dict]:
    """The baseline step's operators by self time (torch.profiler, after a warm-up step): name, milliseconds per step, share."""
    model = speed.fresh_model(arch, splits, device)
    opt = make_optimizer(model, make_config(speed.MFU_ARCH, DATASET, lr=0.01, device=device))
    batches = speed.cycle(splits.loader("train", batch_size, device, train=True, augment=speed.report_augment(splits)))

    def step() -> None:
        """One training step, as images_per_s takes it."""
        x, y = next(batches)
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            loss = F.cross_entropy(model(x), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    model.train()
    step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            step()
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:TOP_OPERATORS]
    return [{"operator": e.key, "ms_per_step": e.self_cpu_time_total / 1000 / steps, "share": e.self_cpu_time_total / total} for e in top]


def main(argv: list[str] | None = None) -> int:
    """Time every variant of every net, profile the baselines, write the record and regenerate the results file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="+", default=list(speed.MFU_ARCHS), help="default: %(default)s")
    parser.add_argument("--batch-size", type=speed.int_at_least(1), default=PROFILES["budget"].batch_size,
                        help="the baseline's batch size (default: the budget profile's, %(default)s)")
    parser.add_argument("--batch-sizes", nargs="+", type=speed.int_at_least(1), default=[256, 512], help="batch sizes besides the baseline's (default: %(default)s)")
    parser.add_argument("--steps", type=speed.int_at_least(1), default=5, help="timed steps per variant (default: %(default)s)")
    parser.add_argument("--warmup", type=speed.int_at_least(1), default=2, help="untimed steps first (default: %(default)s)")
    parser.add_argument("--skip-compile", action="store_true", help="leave out the torch.compile variant (its compilation takes a minute or more)")
    parser.add_argument("--data-dir", help="offline data root (default: DNIC_DATA_DIR)")
    parser.add_argument("--results-md", type=Path, default=speed.RESULTS_MD)
    args = parser.parse_args(argv)
    device, start = default_device(), time.perf_counter()
    amp = amp_dtype("auto", device)
    cores = torch.get_num_threads()
    try:
        for arch in args.arch:
            model_spec(arch)  # a typo fails now, not after minutes of measuring
        splits = load_splits(DATASET, val_size=10, root=args.data_dir)
        if max(args.batch_size, *args.batch_sizes) > len(splits.train_y):
            raise DnicError(f"A batch of {max(args.batch_size, *args.batch_sizes)} is larger than the {len(splits.train_y):,} training images here.",
                            "pass smaller --batch-size and --batch-sizes.")
    except DnicError as err:
        print(f"error: {err.problem} Fix: {err.fix}", file=sys.stderr)
        return 2
    print(f"Training step on {dataset_title(splits.info, splits.source)}, {amp_label(amp)}, {cores} threads, {args.steps} timed steps per variant")
    results = {}
    for arch in args.arch:
        rows = []
        for variant in variants(args.batch_size, args.batch_sizes, cores, not args.skip_compile):
            rows.append(measure(arch, variant, splits, device, amp, args.steps, args.warmup))
            print(f"{arch:>10} {variant['name']:>18}: {rows[-1]['images_per_s']:8,.1f} img/s (warm-up {rows[-1]['warmup_s']:.1f} s)", flush=True)
        results[arch] = {"variants": rows, "operators": operators(arch, splits, device, amp, args.batch_size)}
        for op in results[arch]["operators"]:
            print(f"{'':>10} {op['operator']:>40}: {op['ms_per_step']:9.1f} ms/step ({op['share']:.0%})")
    config = {"dataset": DATASET, "steps": args.steps, "warmup": args.warmup, "batch_size": args.batch_size, "batch_sizes": args.batch_sizes, "amp": amp_label(amp),
              "threads": cores, "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}
    speed.publish(make_record("benchmark", f"bench-step-{device_slug(device, amp_label(amp))}", resolve_profile("auto").name, config, results, device=device,
                              data={DATASET: {"title": dataset_title(splits.info, splits.source), **splits.source}}, seed=0,
                              wall_time_s=time.perf_counter() - start), args.results_md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
