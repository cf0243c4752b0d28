"""Load on the web service: concurrent requests on loopback against python -m dnic_utils.serve, for a ResNet-sized and a small model.

    python benchmarks/load.py [--requests 10000] [--concurrency 8] [--models resnet18 lenet5]

For each model the service starts in a subprocess (onnxruntime on the CPU). A client in this process keeps a bounded
number of POST /predict requests in flight (one PNG of the model's input size, sent as multipart), after a warm-up,
and measures requests/s, the p50 and p99 latency of the whole round trip, errors (any answer but 200, or a failed
request) and the resident memory of the service's process before the measured requests, at its peak and after them.
The goal: no error in 10,000 requests and memory growth under 10%. Client and service share this machine's cores.

A trained export under results/*/models/ (cifar10-resnet18, mnist-lenet5) is used if there is one; otherwise an
untrained model of the same architecture and input is exported for the run (the time does not depend on the weights)
and the record says so. Writes results/<profile>/bench-load-<device model>.json and regenerates benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import socket
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path

import httpx2 as httpx
import numpy as np
import psutil
from PIL import Image

from dnic_utils.config import resolve_profile
from dnic_utils.devices import device_label, device_info, device_slug
from dnic_utils.errors import DnicError
from dnic_utils.export import export_untrained
from dnic_utils.onnx_model import read_card, resolve
from dnic_utils.records import make_record
from speed import RESULTS_MD, int_at_least, publish

MODELS = {"resnet18": "cifar10", "lenet5": "mnist"}  # architecture → the dataset whose input it takes
WARMUP = 200  # requests before memory is first read: imports, arenas and connection pools settle
PACKAGES = ("onnxruntime", "fastapi", "uvicorn", "python-multipart", "httpx2")


def model_card(arch: str, dataset: str, folder: Path) -> tuple[Path, str]:
    """The card of a trained export of arch on dataset if there is one, else of an untrained one exported to folder; and which."""
    try:
        return resolve(f"{dataset}-{arch}"), "trained"
    except DnicError:
        return export_untrained(arch, dataset, folder), "untrained"


def free_port() -> int:
    """A TCP port free on the loopback interface now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_service(card: Path, port: int, log: Path) -> subprocess.Popen:
    """python -m dnic_utils.serve for the model, on loopback, its output in `log`; returns once /health answers."""
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "dnic_utils.serve", "--model", str(card), "--port", str(port), "--log-level", "warning"],
                                stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise DnicError(f"The service did not start: {log.read_text(errors='replace').strip()[-500:] or 'no output'}",
                    f"run python -m dnic_utils.serve --model {card} to see why.")


def png_image(channels: int, size: int) -> bytes:
    """A random PNG of the model's input size and colour (seeded: every run sends the same image)."""
    shape = (size, size) if channels == 1 else (size, size, 3)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


async def send(url: str, image: bytes, requests: int, concurrency: int) -> tuple[list[float], list[str], float]:
    """Send `requests` uploads with at most `concurrency` in flight; each one's round trip in seconds, the errors, the wall time."""
    latencies, errors = [], []
    todo = iter(range(requests))  # shared by the workers: each takes the next request until none is left
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=120) as client:

        async def worker() -> None:
            """Send requests one after another until none is left."""
            for _ in todo:
                start = time.perf_counter()
                try:
                    reply = await client.post("/predict", files={"file": ("image.png", image, "image/png")})
                    if reply.status_code != 200:
                        errors.append(f"HTTP {reply.status_code}: {reply.text[:200]}")
                except httpx.HTTPError as err:
                    errors.append(f"{type(err).__name__}: {err}")
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return latencies, errors, time.perf_counter() - start


class PeakMemory:
    """The largest resident memory of a process, sampled in a thread every 0.1 s while in use."""

    def __init__(self, pid: int) -> None:
        """Watch process `pid`."""
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self) -> None:
        """Read the resident memory until stopped."""
        while not self.done.wait(0.1):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        """Start sampling."""
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop sampling."""
        self.done.set()
        self.thread.join()


def summary(latencies: list[float], errors: list[str], wall_s: float, rss: dict[str, int]) -> dict:
    """Requests/s, latency percentiles (ms), errors and the service's memory (MB) and its growth over the measured requests."""
    ms = np.asarray(latencies) * 1000
    before, peak, after = rss["before"], rss["peak"], rss["after"]
    return {"requests": len(latencies), "errors": len(errors), "error_examples": errors[:3], "wall_time_s": round(wall_s, 3),
            "requests_per_s": len(latencies) / wall_s, "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean()), "max_ms": float(ms.max()), "rss_before_mb": before / 2**20, "rss_peak_mb": peak / 2**20,
            "rss_after_mb": after / 2**20, "rss_growth": (after - before) / before, "rss_peak_growth": (peak - before) / before}


def measure(arch: str, args: argparse.Namespace, folder: Path) -> tuple[dict, dict]:
    """Start the service for one model, warm it up, load it, stop it; the model's description and its measurements."""
    card_path, weights = model_card(arch, MODELS[arch], folder)
    card = read_card(card_path)
    _, channels, size, _ = card["input"]["shape"]
    image = png_image(channels, size)
    port = free_port()
    proc = start_service(card_path, port, folder / f"{arch}-service.log")
    url = f"http://127.0.0.1:{port}"
    try:
        _, warm_errors, _ = asyncio.run(send(url, image, WARMUP, args.concurrency))
        if warm_errors:
            raise DnicError(f"The warm-up of {card['name']} failed: {warm_errors[0]}", "fix the service before measuring it.")
        rss = {"before": psutil.Process(proc.pid).memory_info().rss}
        with PeakMemory(proc.pid) as memory:
            latencies, errors, wall = asyncio.run(send(url, image, args.requests, args.concurrency))
        rss.update(peak=memory.peak, after=psutil.Process(proc.pid).memory_info().rss)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    described = {"name": card["name"], "title": card["title"], "weights": weights, "size_mb": card["size_mb"],
                 "input": f"{channels}×{size}×{size}", "image_bytes": len(image)}
    return described, summary(latencies, errors, wall, rss)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int_at_least(1), default=10_000, help="measured requests per model (default: %(default)s)")
    parser.add_argument("--concurrency", type=int_at_least(1), default=8, help="requests in flight at once (default: %(default)s)")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), help="default: resnet18 lenet5")
    parser.add_argument("--results-md", type=Path, default=RESULTS_MD, help="the file regenerated from the records (default: benchmarks/RESULTS.md)")
    return parser.parse_args(argv)


def benchmark(args: argparse.Namespace) -> Path:
    """Measure every model, write the record and regenerate the results file; returns the record's path."""
    start = time.perf_counter()
    print(f"{device_label(device_info('cpu'))} · {args.requests:,} requests per model, {args.concurrency} in flight, on loopback")
    models, metrics = {}, {}
    with tempfile.TemporaryDirectory(prefix="dnic-load-") as tmp:
        for arch in args.models:
            models[arch], metrics[arch] = measure(arch, args, Path(tmp))
            m, d = metrics[arch], models[arch]
            goal = "met" if m["errors"] == 0 and m["rss_growth"] < 0.10 else "NOT met"
            print(f"{d['title']} ({d['weights']}): {m['requests_per_s']:,.0f} requests/s, p50 {m['p50_ms']:.1f} ms, p99 {m['p99_ms']:.1f} ms, "
                  f"{m['errors']} errors, service memory {m['rss_before_mb']:.0f} → {m['rss_after_mb']:.0f} MB ({m['rss_growth']:+.1%}, "
                  f"peak {m['rss_peak_mb']:.0f} MB): goal {goal}", flush=True)
    config = {"requests": args.requests, "concurrency": args.concurrency, "warmup": WARMUP, "host": "127.0.0.1", "models": models,
              "image": "one random PNG of the model's input size, as multipart",
              "service": "python -m dnic_utils.serve --log-level warning: one uvicorn process, onnxruntime --threads 1 per request"}
    record = make_record("benchmark", f"bench-load-{device_slug('cpu')}", resolve_profile("auto").name, config, metrics, device="cpu", data={},
                         seed=0, wall_time_s=time.perf_counter() - start, packages={p: version(p) for p in PACKAGES})
    return publish(record, args.results_md)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; a failure to start or warm up the service prints one 'error: …' line and returns 2."""
    args = parse_args(argv)
    try:
        benchmark(args)
    except DnicError as err:
        print(f"error: {err.problem} Fix: {err.fix}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
