"""One fit loop for every model: optimizer, schedule, mixed precision, early stopping and resumable checkpoints."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .config import RunConfig, quiet
from .data import BatchLoader
from .errors import DnicError
from .records import atomic_torch_save


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and GPU) from one number."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def amp_dtype(amp: str, device: str) -> torch.dtype | None:
    """The autocast dtype for a mode and device: bf16 where the hardware has it, None for full precision."""
    if amp == "off":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if native_cpu_bf16() else None


def native_cpu_bf16() -> bool:
    """True if the CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast roughly doubles throughput.

    oneDNN also accepts bf16 on plain AVX512 by emulating it: on such a CPU (an AVX512 Xeon without BF16) ResNet18
    trained 3.7× slower under bf16 autocast than in fp32 (25 against 94 images/s), so only native support counts.
    """
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, so absent ones count as unsupported
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def amp_label(dtype: torch.dtype | None) -> str:
    """'bfloat16', 'float16' or 'fp32', as records and tables print the precision."""
    return str(dtype).replace("torch.", "") if dtype else "fp32"


def autocast(device: str, dtype: torch.dtype | None) -> AbstractContextManager:
    """An autocast context for the device, or a no-op for full precision."""
    return torch.autocast(torch.device(device).type, dtype=dtype) if dtype else nullcontext()


def make_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum or AdamW; no weight decay on biases and norm parameters."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    fused = {"fused": True} if cfg.device.startswith("cuda") else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True, **fused)
    return torch.optim.AdamW(groups, lr=cfg.lr, **fused)


def _warmup_cosine(total: int, warmup: int) -> Callable[[int], float]:
    """LR multiplier: linear warm-up, then cosine decay to zero."""

    def factor(step: int) -> float:
        """The multiplier at one optimizer step."""
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return factor


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: RunConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step one-cycle or warm-up + cosine schedule over the whole run."""
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "onecycle" and total >= 8:  # OneCycleLR divides by zero on a handful of steps
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total, pct_start=0.25)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(total, max(1, total // 20)))


# Writing both checkpoints after every epoch cost 0.7 s per epoch for ResNet18 and 2.6 s for ResNet101 (2-core CPU, fsync'd
# atomic writes): more than a whole ResNet18 epoch on one H100.
CHECKPOINT_EVERY_S = 60.0


def load_checkpoint(path: Path, map_location: str = "cpu") -> dict:
    """Read a checkpoint with weights_only=True, turning damage into a clear error."""
    path = Path(path)
    if not path.is_file():
        raise DnicError(f"No checkpoint at {path}.", "train the model first (run its notebook) or pass the right path.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise DnicError(
            f"The checkpoint {path} is corrupt or not a dnic checkpoint ({type(err).__name__}: {err}).",
            "delete it and rerun the notebook to train again (or restore it from a good copy).",
        ) from None


@torch.inference_mode()
def evaluate(model: nn.Module, loader: BatchLoader, amp: torch.dtype | None = None, flip_tta: bool = False) -> dict:
    """Mean loss, accuracy and the predictions of a model over a loader (optionally averaging with the mirrored images)."""
    model.eval()
    device = str(loader.device)
    total_loss = torch.zeros((), device=loader.device)
    preds, targets = [], []
    for xb, yb in loader:
        with autocast(device, amp):
            logits = model(xb).float()
            if flip_tta:  # flip test-time augmentation: average the logits of each image and its mirror image
                logits = (logits + model(xb.flip(-1)).float()) / 2
        total_loss += F.cross_entropy(logits, yb, reduction="sum")
        preds.append(logits.argmax(1))
        targets.append(yb)
    y_pred, y_true = torch.cat(preds).cpu(), torch.cat(targets).cpu()  # one device-to-host copy, not one per batch
    return {"loss": total_loss.item() / len(y_true), "acc": (y_pred == y_true).float().mean().item(), "y_true": y_true, "y_pred": y_pred}


def _train_epoch(
    model: nn.Module, loader: BatchLoader, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler, cfg: RunConfig, amp: torch.dtype | None, desc: str,
) -> dict:
    """One pass over the training loader; returns running loss, accuracy and throughput."""
    model.train()
    loss_sum = torch.zeros((), device=loader.device)
    correct = torch.zeros((), device=loader.device, dtype=torch.long)
    seen = 0
    start = time.perf_counter()
    for xb, yb in tqdm(loader, desc=desc, leave=False, disable=quiet()):
        with autocast(cfg.device, amp):
            logits = model(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=cfg.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        loss_sum += loss.detach() * len(yb)
        correct += (logits.argmax(1) == yb).sum()
        seen += len(yb)
    if cfg.device.startswith("cuda"):
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return {"train_loss": loss_sum.item() / seen, "train_acc": correct.item() / seen, "train_time_s": elapsed, "images_per_s": seen / elapsed}


def fit(
    model: nn.Module, train: BatchLoader, val: BatchLoader, cfg: RunConfig, checkpoint_dir: Path, resume: bool = True, data_id: str = "",
    checkpoint_every_s: float = CHECKPOINT_EVERY_S,
) -> list[dict]:
    """Train with early stopping on validation; keep best.pt and last.pt (resumed if unfinished, same config and data).

    The best weights are kept in memory; best.pt (those weights with their epoch and validation accuracy) and last.pt
    are written together after an epoch that ends checkpoint_every_s or more after the previous write, and after the
    last epoch: an interrupted run loses at most that interval plus the epoch in progress.
    """
    checkpoint_dir = Path(checkpoint_dir)
    if cfg.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: let cuDNN pick its fastest kernels once
    amp = amp_dtype(cfg.amp, cfg.device)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, len(train))
    scaler = torch.amp.GradScaler(enabled=amp == torch.float16 and cfg.device.startswith("cuda"))
    state = {"epoch": 0, "history": [], "best_acc": -1.0, "best_epoch": 0, "bad_epochs": 0}
    last, best = checkpoint_dir / "last.pt", checkpoint_dir / "best.pt"
    best_weights, best_unsaved = None, False
    if resume and last.is_file():
        saved = load_checkpoint(last, cfg.device)
        same_run = (saved.get("config") == cfg.to_dict() and saved.get("data_id") == data_id and not saved.get("finished")
                    and "rng" in saved)  # a checkpoint from before the random states were saved starts over
        # best.pt is written just before last.pt: after a crash between the two they disagree, and the run starts over
        best_saved = load_checkpoint(best, cfg.device) if same_run and best.is_file() else {}
        if same_run and best_saved.get("epoch") == saved["best_epoch"]:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            train.generator.set_state(saved["generator"].to(train.generator.get_state().device))
            scaler.load_state_dict(saved["scaler"])
            torch.set_rng_state(saved["rng"])  # dropout draws from the global generators
            if cfg.device.startswith("cuda"):
                torch.cuda.set_rng_state_all(saved["cuda_rng"])
            state = {k: saved[k] for k in state}
            best_weights = best_saved["model"]
    saved_at = time.monotonic()
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        row = _train_epoch(model, train, optimizer, scheduler, scaler, cfg, amp, f"epoch {epoch}/{cfg.epochs}")
        val_metrics = evaluate(model, val, amp)
        row = {"epoch": epoch, **row, "val_loss": val_metrics["loss"], "val_acc": val_metrics["acc"], "lr": scheduler.get_last_lr()[0]}
        state["history"].append(row)
        if row["val_acc"] > state["best_acc"]:
            state.update(best_acc=row["val_acc"], best_epoch=epoch, bad_epochs=0)
            best_weights, best_unsaved = {k: v.detach().clone() for k, v in model.state_dict().items()}, True
        else:
            state["bad_epochs"] += 1
        stop = state["bad_epochs"] >= cfg.patience
        state["epoch"] = epoch
        finished = stop or epoch == cfg.epochs
        if finished or time.monotonic() - saved_at >= checkpoint_every_s:
            if best_unsaved:
                atomic_torch_save({"epoch": state["best_epoch"], "val_acc": state["best_acc"], "model": best_weights}, best)
                best_unsaved = False
            atomic_torch_save(
                {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "generator": train.generator.get_state(), "scaler": scaler.state_dict(), "rng": torch.get_rng_state(),
                 "cuda_rng": torch.cuda.get_rng_state_all() if cfg.device.startswith("cuda") else [],
                 "config": cfg.to_dict(), "data_id": data_id, "finished": finished, **state},
                last,
            )
            saved_at = time.monotonic()
        if stop:
            break
    model.load_state_dict(best_weights)
    return state["history"]
