"""Everything that depends on the device: choosing it, its precision, autocast, synchronising, and naming it in records."""

from __future__ import annotations

import platform
import re
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

from .errors import DnicError

AMP_MODES = ("auto", "bf16", "fp16", "off")


def default_device() -> str:
    """'cuda' when a GPU is visible, else 'cpu'."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def is_cuda(device: str | torch.device) -> bool:
    """True for 'cuda', 'cuda:N' or a CUDA torch.device."""
    return torch.device(device).type == "cuda"


def checked_device(device: str | None) -> str:
    """The device to use: the argument if valid and present, else the default; a clear error otherwise."""
    dev = device or default_device()
    if not isinstance(dev, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", dev):
        raise DnicError(f"Unknown device {dev!r}.", "use 'cpu', 'cuda' or 'cuda:N', or None to pick automatically.")
    if is_cuda(dev) and not torch.cuda.is_available():
        raise DnicError(f"Device {dev!r} was asked for but no GPU is visible.", "leave `device` as None to pick the CPU, or run on a GPU machine.")
    if is_cuda(dev) and (torch.device(dev).index or 0) >= torch.cuda.device_count():
        raise DnicError(f"Device {dev!r} was asked for but only {torch.cuda.device_count()} GPU(s) are visible.",
                        f"use 'cuda' or one of cuda:0 … cuda:{torch.cuda.device_count() - 1}.")
    return dev


def synchronize(device: str | torch.device) -> None:
    """Wait for queued GPU work, so that a clock read afterwards includes it (a no-op on the CPU)."""
    if is_cuda(device):
        torch.cuda.synchronize(device)


def native_cpu_bf16() -> bool:
    """True if the CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast roughly doubles throughput.

    oneDNN also accepts bf16 on plain AVX512 by emulating it: on such a CPU (an AVX512 Xeon without BF16) ResNet18
    trained 3.7× slower under bf16 autocast than in fp32 (25 against 94 images/s), so only native support counts.
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so absent ones count as unsupported
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def amp_dtype(amp: str, device: str) -> torch.dtype | None:
    """The autocast dtype for a mode and device: bf16 where the hardware has it, None for full precision."""
    if amp == "off":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if is_cuda(device):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if native_cpu_bf16() else None


def amp_label(dtype: torch.dtype | None) -> str:
    """'bfloat16', 'float16' or 'fp32', as records and tables print the precision."""
    return str(dtype).replace("torch.", "") if dtype else "fp32"


def autocast(device: str, dtype: torch.dtype | None) -> AbstractContextManager:
    """An autocast context for the device, or a no-op for full precision."""
    return torch.autocast(torch.device(device).type, dtype=dtype) if dtype else nullcontext()


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), else the architecture."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def device_info(device: str) -> dict:
    """A description of the device a run used, for its record."""
    if is_cuda(device):
        return {"type": "cuda", "name": torch.cuda.get_device_name(device), "count": torch.cuda.device_count()}
    return {"type": "cpu", "name": cpu_name(), "threads": torch.get_num_threads()}


def device_label(info: dict) -> str:
    """'NVIDIA H100 80GB HBM3' or 'CPU (x86_64, 2 threads)', from a record's device description."""
    if info["type"] == "cuda":
        return info["name"]
    return f"CPU ({info['name']}, {info['threads']} thread{'' if info['threads'] == 1 else 's'})"


def device_slug(device: str, precision: str | None = None) -> str:
    """The device model (and precision, if given) as a file-name part, e.g. 'nvidia-h100-80gb-hbm3-bfloat16'."""
    label = device_label(device_info(device)) + (f" {precision}" if precision else "")
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


def sched_times() -> dict[int, tuple[float, float]] | None:
    """Per live thread of this process, the seconds it has run on a CPU and waited for one (Linux schedstat); None elsewhere."""
    tasks = Path("/proc/self/task")
    if not tasks.is_dir():
        return None
    times = {}
    for task in tasks.iterdir():
        try:
            fields = (task / "schedstat").read_text().split()
            times[int(task.name)] = (int(fields[0]) / 1e9, int(fields[1]) / 1e9)
        except (FileNotFoundError, ProcessLookupError):  # the thread ended while we looked
            continue
        except (OSError, ValueError, IndexError):
            return None
    return times


def sched_span(before: dict[int, tuple[float, float]] | None, after: dict[int, tuple[float, float]] | None) -> tuple[float, float] | None:
    """(seconds run, seconds waited for a CPU) by the process's threads between two sched_times() readings; None if not reported.

    Counted over the threads alive at the second reading (from zero for those started in between).
    """
    if before is None or after is None:
        return None
    ran = waited = 0.0
    for tid, (run_s, wait_s) in after.items():
        run0, wait0 = before.get(tid, (0.0, 0.0))
        ran, waited = ran + max(run_s - run0, 0.0), waited + max(wait_s - wait0, 0.0)
    return ran, waited


def wait_share(spans: list[tuple[float, float] | None]) -> float | None:
    """The waited share of runnable time over sched_span() spans; None if any span was not measured.

    About 0 when the process was rarely kept from a core; 0.5 when its threads waited as long as they ran, because other
    work shared the CPU (its times are then not speed numbers).
    """
    if not spans or any(span is None for span in spans):
        return None
    ran, waited = sum(span[0] for span in spans), sum(span[1] for span in spans)
    return waited / (ran + waited) if ran + waited > 0 else None


def cpu_wait(before: dict[int, tuple[float, float]] | None, after: dict[int, tuple[float, float]] | None) -> float | None:
    """The share of its runnable time that the process waited for a CPU between two sched_times() readings (see wait_share)."""
    return wait_share([sched_span(before, after)])


SHARED_CPU = 0.1  # a run that waited for a core this share of its training time or more shared the CPU: its speed is not its own


def wait_pct(share: float | None) -> str:
    """A CPU-wait share as a whole percentage, or '—' where it was not measured."""
    return "—" if share is None or share != share else f"{100 * share:.0f}"  # share != share: NaN, from a table
