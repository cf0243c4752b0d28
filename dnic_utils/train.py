"""One fit loop for every model: optimizer, schedule, mixed precision, early stopping and resumable checkpoints."""

from __future__ import annotations

import math
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import TrainState
from .config import RunConfig
from .data import BatchLoader, spread
from .devices import amp_dtype, autocast, is_cuda, sched_span, sched_times, synchronize, wait_share
from .errors import DivergedWarning
from .models import model_fingerprint
from .records import utc_now
from .settings import quiet
from .transfer.stages import run_cut, stages_of


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and GPU) from one number."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def copied_params(model: nn.Module, cfg: RunConfig) -> set[int]:
    """The ids of the parameters in the stages a transfer run copies from its source (none without one)."""
    if cfg.source is None:
        return set()
    return {id(p) for stage in stages_of(model)[:run_cut(model, cfg.cut)] for p in stage.parameters()}


def make_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum or AdamW over the trainable parameters, in groups with their own rates.

    Biases and norm parameters get the learning rate × cfg.bias_lr and no weight decay (with cfg.bias_decay, the weights' decay
    per step); stages copied by a transfer run get × cfg.copied_lr on top.
    """
    copied = copied_params(model, cfg) if cfg.copied_lr != 1 else set()
    trainable = [p for p in model.parameters() if p.requires_grad]
    parts = [(1.0, [p for p in trainable if id(p) not in copied])]
    if copied:  # the copied stages get groups of their own only where their rate differs
        parts.append((cfg.copied_lr, [p for p in trainable if id(p) in copied]))
    groups = [group for scale, params in parts for group in (
        {"params": [p for p in params if p.ndim > 1], "weight_decay": cfg.weight_decay, "lr": cfg.lr * scale},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": cfg.weight_decay / cfg.bias_lr if cfg.bias_decay else 0.0,
         "lr": cfg.lr * cfg.bias_lr * scale})]
    fused = {"fused": True} if is_cuda(cfg.device) else {}
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, **fused)
    return torch.optim.AdamW(groups, lr=cfg.lr, **fused)


# Lookahead as airbench94 schedules it: a sync every 5 steps and at the end of each epoch, at which the slow weights keep a
# share 0.95**5 · (t/T)**3 of themselves at step t of T and the fast weights restart from them. Early on the slow weights
# simply follow the fast ones; near the end they average the last steps. airbench starts them at epoch 3 (where they would
# keep 2% of themselves), restarts from them outright at an epoch's end (which would drop the steps since the last sync:
# most of the training where epochs have few steps, as in the transfer study's label budgets), and averages the BN
# statistics too (which here stay the fast net's).
LOOKAHEAD_STEPS, LOOKAHEAD_KEEP = 5, 0.95 ** 5


def lookahead_keep(step: int, total: int) -> float:
    """The share of the slow weights kept at a sync at `step` of `total` steps."""
    return LOOKAHEAD_KEEP * min(1.0, step / total) ** 3


def add_lookahead(optimizer: torch.optim.Optimizer, total_steps: int) -> None:
    """Lookahead (Zhang et al. 2019) on airbench's schedule, synced every LOOKAHEAD_STEPS steps.

    The slow weights live in the optimizer's state and the step count in its groups, so checkpoints keep them.
    """
    with torch.no_grad():
        for group in optimizer.param_groups:
            group.setdefault("lookahead_steps", 0)
            group["lookahead_total"] = total_steps
            for p in group["params"]:
                optimizer.state[p]["lookahead_slow"] = p.detach().clone()

    def count(opt: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
        """After each optimizer step: count it, and sync on every k-th."""
        for group in opt.param_groups:
            group["lookahead_steps"] += 1
        if opt.param_groups[0]["lookahead_steps"] % LOOKAHEAD_STEPS == 0:
            lookahead_sync(opt)

    optimizer.register_step_post_hook(count)


@torch.no_grad()
def lookahead_sync(optimizer: torch.optim.Optimizer) -> None:
    """Move each slow copy (1 - keep) of the way to the fast weights and restart these from it; nothing without Lookahead."""
    for group in optimizer.param_groups:
        if "lookahead_total" not in group:
            continue
        keep = lookahead_keep(group["lookahead_steps"], group["lookahead_total"])
        for p in group["params"]:
            slow = optimizer.state[p]["lookahead_slow"]
            slow.lerp_(p, 1.0 - keep)
            p.copy_(slow)


def _warmup_cosine(total: int, warmup: int) -> Callable[[int], float]:
    """LR multiplier: linear warm-up, then cosine decay to zero."""

    def factor(step: int) -> float:
        """The multiplier at one optimizer step."""
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    return factor


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: RunConfig, steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler:
    """A per-step schedule over the whole run: one-cycle, triangle, warm-up + cosine, or constant."""
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    if cfg.schedule == "triangle":  # airbench94's: linear from 0.2× to the peak at 23% of the steps, then linear to 0.07×
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: float(np.interp(step, [0, 0.23 * total, total], [0.2, 1.0, 0.07])))
    if cfg.schedule == "onecycle" and total >= 8:  # OneCycleLR divides by zero on a handful of steps
        peaks = [group["lr"] for group in optimizer.param_groups]
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peaks, total_steps=total, pct_start=0.25)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(total, max(1, total // 20)))


PROBE_POINTS = 8  # validation points per run at least, a one-epoch run included: a curve, not a dot
PROBE_IMAGES = 512  # the fixed slice of the validation split those points are measured on: at most this many


def probe_images(val_size: int) -> int:
    """Images of the validation slice measured within epochs: a quarter of the split, at most PROBE_IMAGES."""
    return max(1, min(PROBE_IMAGES, val_size // 4))


def probe_index(val_size: int) -> torch.Tensor:
    """Positions of that slice: evenly spaced through the split, so that a split stored class by class (the CIFAR-10 JPEG copy) keeps its classes."""
    return spread(val_size, probe_images(val_size))


def probe_steps(steps_per_epoch: int, epochs: int) -> list[int]:
    """The steps of an epoch after which the validation slice is measured: evenly spaced, the epoch's last step included."""
    per_epoch = min(steps_per_epoch, math.ceil(PROBE_POINTS / epochs))
    return sorted({max(1, round(steps_per_epoch * k / per_epoch)) for k in range(1, per_epoch + 1)})


# Writing the checkpoint after every epoch cost 0.7 s per epoch for ResNet18 and 2.6 s for ResNet101 (2-core CPU, fsync'd
# atomic writes): more than a whole ResNet18 epoch on one H100.
CHECKPOINT_EVERY_S = 60.0


def train_mode(model: nn.Module) -> None:
    """Training mode, except for norm layers whose parameters are all frozen: their running statistics stay as they are."""
    model.train()
    for module in model.modules():
        params = list(module.parameters(recurse=False))
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and params and not any(p.requires_grad for p in params):
            module.eval()


def tta_logits(model: nn.Module, xb: torch.Tensor, tta: str, flip: bool) -> torch.Tensor:
    """Logits averaged over test-time views.

    'off': the image; 'flip': it and its mirror image; 'multiview' (airbench): it with weight 1/2 and its 1-pixel shifts
    up-left and down-right with 1/4 each, every view also mirrored where `flip`.
    """

    def views(x: torch.Tensor) -> torch.Tensor:
        """The logits of x, averaged with those of its mirror image where flips keep the label."""
        return (model(x).float() + model(x.flip(-1)).float()) / 2 if flip else model(x).float()

    if tta == "off":
        return model(xb).float()
    if tta == "flip":
        return views(xb)
    h, w = xb.shape[-2:]
    padded = F.pad(xb, (1, 1, 1, 1), mode="reflect")
    return views(xb) / 2 + (views(padded[..., :h, :w]) + views(padded[..., 2:, 2:])) / 4


@torch.inference_mode()
def evaluate(model: nn.Module, loader: BatchLoader, amp: torch.dtype | None = None, tta: str = "off", flip: bool = True) -> dict:
    """Mean loss, accuracy, and per image the prediction and its softmax probability (optionally over test-time views)."""
    model.eval()
    device = str(loader.device)
    total_loss = torch.zeros((), device=loader.device)
    preds, confidences, targets = [], [], []
    for xb, yb in loader:
        with autocast(device, amp):
            logits = tta_logits(model, xb, tta, flip)
        total_loss += F.cross_entropy(logits, yb, reduction="sum")
        confidence, pred = torch.softmax(logits, dim=1).max(dim=1)
        preds.append(pred)
        confidences.append(confidence)
        targets.append(yb)
    y_pred, y_true = torch.cat(preds).cpu(), torch.cat(targets).cpu()  # one device-to-host copy, not one per batch
    return {"loss": total_loss.item() / len(y_true), "acc": (y_pred == y_true).float().mean().item(), "y_true": y_true, "y_pred": y_pred,
            "confidence": torch.cat(confidences).cpu()}


def _train_epoch(state: TrainState, loader: BatchLoader, cfg: RunConfig, amp: torch.dtype | None, desc: str,
                 probe: Callable[[int, int, float], None] = lambda step, seen, seconds: None, probe_at: tuple[int, ...] = (),
                 keep: Callable[[dict], None] = lambda partial: None) -> dict:
    """One pass over the training loader, calling probe(step, images, training seconds) after the steps in probe_at.

    After each probe, keep(partial) gets the epoch so far (steps, sums, the shuffle's generator state), which a checkpoint can
    hold; an epoch whose state.progress.partial is set goes on from there. Its time and CPU wait leave the probes out.
    """
    model, optimizer, scheduler, scaler = state.model, state.optimizer, state.scheduler, state.scaler
    train_mode(model)
    done = state.progress.partial or {"step": 0, "loss_sum": 0.0, "correct": 0, "seen": 0, "train_time_s": 0.0, "spans": []}
    if done["step"]:
        loader.resume_at(done["step"], done["epoch_state"])
    loss_sum = torch.tensor(done["loss_sum"], device=loader.device)
    correct = torch.tensor(done["correct"], device=loader.device, dtype=torch.long)
    seen, probing, spans = done["seen"], 0.0, list(done["spans"])
    sched, start = sched_times(), time.perf_counter() - done["train_time_s"]  # training time before an interruption counts
    batches = tqdm(loader, desc=desc, leave=False, disable=quiet(), initial=done["step"], total=len(loader))
    for step, (xb, yb) in enumerate(batches, start=done["step"] + 1):
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
        if step in probe_at:
            synchronize(cfg.device)
            t0 = time.perf_counter()
            spans.append(sched_span(sched, sched_times()))
            probe(step, seen, t0 - start - probing)
            keep({"step": step, "loss_sum": loss_sum.item(), "correct": correct.item(), "seen": seen, "train_time_s": t0 - start - probing,
                  "spans": list(spans), "epoch_state": loader.epoch_state})
            train_mode(model)
            sched = sched_times()
            probing += time.perf_counter() - t0
    synchronize(cfg.device)
    elapsed = time.perf_counter() - start - probing
    spans.append(sched_span(sched, sched_times()))
    return {"train_loss": loss_sum.item() / seen, "train_acc": correct.item() / seen, "train_time_s": elapsed, "images": seen,
            "images_per_s": seen / elapsed, "cpu_wait": wait_share(spans)}


@dataclass
class FitResult:
    """What fit returns: the epochs' history, the selected (best validation) epoch, and the training run's id."""

    history: list[dict]
    curve: list[dict]  # validation accuracy on a fixed slice, PROBE_POINTS or more times per run, with images seen and training time
    best: dict  # the history row of the selected epoch
    run_id: str  # the checkpoint's id; the record names it, so a finished, reported run is trained afresh next time
    reused: bool  # True when training had already finished before a crash, and only its selected weights were taken
    resumes: list[dict]  # where training went on after an interruption (empty for an unbroken run): its times add up over them


def fit(
    model: nn.Module, train: BatchLoader, val: BatchLoader, cfg: RunConfig, checkpoint_dir: Path, resume: bool = True, data_id: str = "",
    checkpoint_every_s: float = CHECKPOINT_EVERY_S, reported_id: str | None = None, on_epoch: Callable[[dict], None] | None = None,
) -> FitResult:
    """Train with early stopping on validation, leaving the model with the selected weights; resumable from last.pt.

    on_epoch, if given, is called with each epoch's history row once it is recorded (e.g. to report it to a pruner); an
    exception it raises stops training and propagates.

    last.pt (the whole training state, best weights included) is written at a validation point within an epoch or at an
    epoch's end once checkpoint_every_s have passed since the previous write, and after the last epoch: a crash loses at
    most that interval plus the time to the next point. A run whose training finished but whose record names another run
    (reported_id) is not trained again.
    """
    if is_cuda(cfg.device):
        torch.backends.cudnn.benchmark = True  # fixed batch shapes: let cuDNN pick its fastest kernels once
    amp = amp_dtype(cfg.amp, cfg.device)
    optimizer = make_optimizer(model, cfg)
    if cfg.lookahead:
        add_lookahead(optimizer, cfg.epochs * len(train))
    identity = {"config": cfg.to_dict(), "data": data_id, "model": model_fingerprint(cfg.arch, model)}
    state = TrainState(model, optimizer, make_scheduler(optimizer, cfg, len(train)),
                       torch.amp.GradScaler(enabled=amp == torch.float16 and is_cuda(cfg.device)), train.generator, identity)
    last = Path(checkpoint_dir) / "last.pt"
    if resume and state.restore(last, reported_id) and not state.progress.finished:
        at = state.progress.partial["step"] if state.progress.partial else 0
        state.progress.resumes.append({"epoch": state.progress.epoch + 1, "step": at, "at": utc_now()})
    progress = state.progress
    reused = progress.finished
    saved_at = time.monotonic()
    probe_at, ends = probe_index(len(val.y)), probe_steps(len(train), cfg.epochs)
    probe_loader = val.subset(probe_at)
    for epoch in range(progress.epoch + 1, 0 if reused else cfg.epochs + 1):
        if progress.partial:  # an epoch resumed midway: the curve's base is where the epoch began
            before = progress.partial["before"]
        else:
            before = progress.curve[-1] if progress.curve else {"images_seen": 0, "train_time_s": 0.0}

        def point(step: int, seen: int, seconds: float, acc: float | None = None) -> None:
            """Add one point of the curve: the accuracy on the validation slice (measured now unless given)."""
            acc = evaluate(model, probe_loader, amp)["acc"] if acc is None else acc
            progress.curve.append({"epoch": round(epoch - 1 + step / len(train), 4), "images_seen": before["images_seen"] + seen,
                                   "train_time_s": before["train_time_s"] + seconds, "val_acc": acc})

        def keep(partial: dict) -> None:
            """Write last.pt at a validation point within the epoch, once checkpoint_every_s have passed since the last write."""
            nonlocal saved_at
            if time.monotonic() - saved_at >= checkpoint_every_s:
                progress.partial = {**partial, "before": before}
                state.save(last)
                saved_at = time.monotonic()

        train.epoch = epoch  # alternating flips mirror by the epoch's parity, so a resumed run flips as an unbroken one would
        row = _train_epoch(state, train, cfg, amp, f"epoch {epoch}/{cfg.epochs}", point, tuple(ends[:-1]), keep)
        progress.partial = None
        lookahead_sync(optimizer)  # the epoch's last steps are kept, and its validation sees the averaged weights
        val_metrics = evaluate(model, val, amp)
        hits = val_metrics["y_pred"][probe_at] == val_metrics["y_true"][probe_at]  # the epoch's end: the slice from the full validation pass
        point(ends[-1], row["images"], row["train_time_s"], hits.float().mean().item())
        row = {"epoch": epoch, **row, "val_loss": val_metrics["loss"], "val_acc": val_metrics["acc"], "lr": state.scheduler.get_last_lr()[0]}
        if not math.isfinite(row["train_loss"]):  # said, not raised: a smoke run of a few steps may diverge and still show the pipeline
            warnings.warn(f"Training diverged: the mean training loss of epoch {epoch} is {row['train_loss']}, so this run's weights and "
                          f"accuracies mean nothing. Fix: lower the learning rate (lr, now {cfg.lr:g}) or train in fp32 (amp='off').",
                          DivergedWarning, stacklevel=2)
        progress.history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        if row["val_acc"] > progress.best_acc:
            progress.best_acc, progress.best_epoch, progress.bad_epochs = row["val_acc"], epoch, 0
            state.keep_best()
        else:
            progress.bad_epochs += 1
        progress.epoch = epoch
        progress.finished = progress.bad_epochs >= cfg.patience or epoch == cfg.epochs
        if progress.finished or time.monotonic() - saved_at >= checkpoint_every_s:
            state.save(last)
            saved_at = time.monotonic()
        if progress.finished:
            break
    model.load_state_dict(state.best_weights)
    return FitResult(progress.history, progress.curve, progress.history[progress.best_epoch - 1], progress.run_id, reused, progress.resumes)
