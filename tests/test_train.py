"""Training: a tiny run memorises its data; checkpoints; resuming after a crash at any point; schedules and precision."""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from pathlib import Path

import pytest
import torch

from dnic_utils import devices, files, train
from dnic_utils.checkpoint import load_checkpoint
from dnic_utils.config import TTA_MODES, make_config, tta_views
from dnic_utils.data import Augment, BatchLoader
from dnic_utils.errors import DivergedWarning, DnicError
from dnic_utils.files import LEFTOVER_AGE_S
from dnic_utils.models import build_model
from dnic_utils.train import evaluate, fit

MEAN, STD = (0.5,), (0.29,)


def random_batch(n: int = 64, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n fixed random grey images with random labels: only memorisation can fit them."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8), torch.randint(0, 10, (n,), generator=g)


def lenet_config(epochs: int, **overrides):
    cfg = make_config("lenet5", "mnist", profile="smoke", epochs=epochs, batch_size=64, optimizer="adamw", lr=3e-3,
                      label_smoothing=0.0, augment=False, amp="off", device="cpu")
    return dataclasses.replace(cfg, **overrides)


def loaders(x: torch.Tensor, y: torch.Tensor, batch_size: int = 64) -> tuple[BatchLoader, BatchLoader]:
    return (BatchLoader(x, y, batch_size, MEAN, STD, shuffle=True, seed=0), BatchLoader(x, y, 256, MEAN, STD))


def fresh_lenet() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("lenet5", 10, 1, 28)


# --------------------------------------------------------------------------------------------------------------
# A tiny run memorises a small batch


def test_lenet_memorises_64_random_images(tmp_path: Path) -> None:
    x, y = random_batch()
    cfg = lenet_config(80, patience=80)  # no early stop: the validation set is the training set
    model = fresh_lenet()
    train_loader, val_loader = loaders(x, y)
    assert evaluate(model, val_loader)["acc"] < 0.5  # random labels: chance level before training
    history = fit(model, train_loader, val_loader, cfg, tmp_path / "ckpt").history
    assert len(history) == 80 and [row["epoch"] for row in history] == list(range(1, 81))
    result = evaluate(model, val_loader)
    assert result["acc"] == 1.0
    assert torch.equal(result["y_pred"], y)
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 10
    assert max(row["val_acc"] for row in history) == 1.0
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "train_time_s", "images_per_s", "cpu_wait"} <= set(history[0])
    assert all(0.0 <= row["cpu_wait"] <= 1.0 for row in history)  # Linux reports it (the CI machines are Linux)


def test_a_diverged_run_is_said_so_with_the_fix(tmp_path: Path) -> None:
    x, y = random_batch()
    model = fresh_lenet()
    model.register_forward_hook(lambda module, inputs, output: output * float("nan"))  # as weights gone to NaN would give
    with pytest.warns(DivergedWarning, match=r"Training diverged: the mean training loss of epoch 1 is nan.*Fix: lower the learning rate \(lr, now 0.003\)"):
        history = fit(model, *loaders(x, y), lenet_config(1), tmp_path / "ckpt").history
    assert math.isnan(history[0]["train_loss"])  # kept as it was: the record shows what happened


# --------------------------------------------------------------------------------------------------------------
# Checkpoints


def test_fit_keeps_the_whole_state_with_the_best_weights_in_last_pt(tmp_path: Path) -> None:
    x, y = random_batch(48)
    cfg = lenet_config(2)
    model = fresh_lenet()
    result = fit(model, *loaders(x, y, 16), cfg, tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # one file, no temporary ones
    state = load_checkpoint(tmp_path / "last.pt")
    progress = state["progress"]
    assert state["identity"]["config"] == cfg.to_dict() and progress["finished"] is True
    assert progress["epoch"] == len(result.history) == len(progress["history"]) and progress["history"] == result.history
    assert result.best == max(result.history, key=lambda row: row["val_acc"]) and progress["best_epoch"] == result.best["epoch"]
    assert progress["run_id"] == result.run_id and not result.reused
    for key, value in model.state_dict().items():  # fit leaves the model with the best epoch's weights, as saved
        assert torch.equal(value, state["best_weights"][key]), key


def stub_val_accuracy(accs: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make fit's validation at each epoch's end report these accuracies, one per epoch (the points within epochs are left real)."""
    values = iter(accs)

    def stub(model, loader, amp=None):
        result = evaluate(model, loader, amp)
        return {**result, "acc": next(values)} if sys._getframe(1).f_code.co_name == "fit" else result

    monkeypatch.setattr(train, "evaluate", stub)


def record_writes(monkeypatch: pytest.MonkeyPatch, fail_at: int | None = None) -> list[str]:
    """Names of the files written atomically; the write number fail_at dies like a kill -9 before its rename."""
    writes: list[str] = []
    real = files.os.replace

    def replace(src, dst):
        writes.append(Path(dst).name)
        if len(writes) == fail_at:
            raise Interrupted(f"killed while writing {dst}")
        return real(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    return writes


def test_checkpoints_are_written_at_most_every_interval_and_at_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = random_batch(48)
    writes = record_writes(monkeypatch)
    stub_val_accuracy([0.9, 0.5, 0.5], monkeypatch)
    weights: list[dict] = []
    count_epochs([], monkeypatch, weights)
    model = fresh_lenet()
    fit(model, *loaders(x, y, 16), lenet_config(3, patience=10), tmp_path, checkpoint_every_s=3600)
    assert writes == ["last.pt"]  # one write, after the last epoch
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["progress"]["epoch"] == 3 and state["progress"]["best_epoch"] == 1
    after_epoch_1 = weights[1]  # the weights epoch 2 started from
    for key, value in model.state_dict().items():  # a copy of epoch 1's weights, kept in memory, not the live ones of epoch 3
        assert torch.equal(value, after_epoch_1[key]) and torch.equal(state["best_weights"][key], value), key
    assert any(not torch.equal(state["model"][k], v) for k, v in after_epoch_1.items())

    writes.clear()
    stub_val_accuracy([0.1, 0.2, 0.3], monkeypatch)
    fit(fresh_lenet(), *loaders(x, y, 16), lenet_config(3, patience=10), tmp_path / "every", checkpoint_every_s=0)
    assert writes == ["last.pt"] * 9  # 3 steps an epoch: at the validation points after steps 1 and 2, and at each epoch's end


def test_a_kill_during_any_checkpoint_write_loses_at_most_the_epoch_in_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Epoch 2 improves on epoch 1; a kill -9 at each write of epoch 2's checkpoint: the next run trains epoch 2 again, not epoch 1."""
    x, y = random_batch(48)
    cfg = lenet_config(3, patience=10)
    with monkeypatch.context() as m:  # a run without kills tells which writes belong to epoch 2
        stub_val_accuracy([0.5, 0.9, 0.1], m)
        writes = record_writes(m)
        epochs: list[str] = []
        real = train._train_epoch
        m.setattr(train, "_train_epoch", lambda *args: (epochs.append(len(writes)), real(*args))[1])
        fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path / "dry", checkpoint_every_s=0)
    epoch_2_writes = range(epochs[1] + 1, epochs[2] + 1)
    assert len(epoch_2_writes) >= 1
    for kill_at in epoch_2_writes:
        folder = tmp_path / f"kill-{kill_at}"
        with monkeypatch.context() as m:
            stub_val_accuracy([0.5, 0.9, 0.1], m)
            record_writes(m, fail_at=kill_at)
            with pytest.raises(Interrupted):
                fit(fresh_lenet(), *loaders(x, y, 16), cfg, folder, checkpoint_every_s=0)
        calls: list[str] = []
        with monkeypatch.context() as m:
            count_epochs(calls, m)
            result = fit(fresh_lenet(), *loaders(x, y, 16), cfg, folder)
        assert calls == ["epoch 2/3", "epoch 3/3"], f"killed at write {kill_at}"
        assert [row["epoch"] for row in result.history] == [1, 2, 3]


def test_a_killed_write_leaves_no_stray_temporary_file(tmp_path: Path) -> None:
    x, y = random_batch(32)
    tmp_path.mkdir(exist_ok=True)
    stray = tmp_path / ".last.pt.k1ll3d.tmp"  # what mkstemp left when the process died before the rename
    stray.write_bytes(b"half a checkpoint")
    os.utime(stray, (time.time() - 2 * LEFTOVER_AGE_S,) * 2)
    writing = tmp_path / ".last.pt.0th3r.tmp"  # another process's write in progress: young, left alone
    writing.write_bytes(b"being written")
    fit(fresh_lenet(), *loaders(x, y, 16), lenet_config(1), tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [writing.name, "last.pt"]


def test_corrupt_checkpoint_names_its_path(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    path.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(DnicError) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value) and "corrupt" in str(err.value) and "Fix:" in str(err.value)


def test_missing_checkpoint_names_its_path(tmp_path: Path) -> None:
    with pytest.raises(DnicError) as err:
        load_checkpoint(tmp_path / "nope.pt")
    assert str(tmp_path / "nope.pt") in str(err.value) and "Fix:" in str(err.value)


def test_checkpoint_with_pickled_code_is_refused_without_torchs_unsafe_advice(tmp_path: Path) -> None:
    """weights_only loading: a checkpoint that needs arbitrary classes is reported, not executed, and the fix is not 'weights_only=False'."""
    path = tmp_path / "evil.pt"
    torch.save({"config": lenet_config(1)}, path)  # a dataclass instance is not plain data
    with pytest.raises(DnicError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert str(path) in message and "weights_only" not in message and "will likely succeed" not in message


def test_a_corrupt_checkpoint_is_set_aside_and_the_run_starts_over(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    x, y = random_batch(32)
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")  # e.g. a finished run's file, damaged on disk
    calls: list[str] = []
    count_epochs(calls, monkeypatch)
    fit(fresh_lenet(), *loaders(x, y, 16), lenet_config(1), tmp_path)
    assert calls == ["epoch 1/1"]
    assert (tmp_path / "last.pt.corrupt").read_bytes() == b"not a checkpoint"  # kept, not lost
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "unreadable" in out[0] and "starts over" in out[0]


# --------------------------------------------------------------------------------------------------------------
# Resuming an interrupted run


class Interrupted(Exception):
    """Stands in for a kernel that died."""


def interrupt_at(epoch: int, calls: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    real = train._train_epoch

    def wrapper(state, loader, cfg, amp, desc, *probe):
        calls.append(desc)
        if len(calls) == epoch:
            raise Interrupted(desc)
        return real(state, loader, cfg, amp, desc, *probe)

    monkeypatch.setattr(train, "_train_epoch", wrapper)


def count_epochs(calls: list[str], monkeypatch: pytest.MonkeyPatch, seen_weights: list | None = None) -> None:
    real = train._train_epoch

    def wrapper(state, loader, cfg, amp, desc, *probe):
        calls.append(desc)
        if seen_weights is not None:
            seen_weights.append({k: v.clone() for k, v in state.model.state_dict().items()})
        return real(state, loader, cfg, amp, desc, *probe)

    monkeypatch.setattr(train, "_train_epoch", wrapper)


@pytest.fixture
def interrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A 2-epoch run that died during epoch 2: last.pt holds epoch 1, not finished."""
    x, y = random_batch(48)
    cfg = lenet_config(2)
    calls: list[str] = []
    with monkeypatch.context() as m:
        interrupt_at(2, calls, m)
        with pytest.raises(Interrupted):
            fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path, checkpoint_every_s=0)  # a checkpoint after every epoch
    assert calls == ["epoch 1/2", "epoch 2/2"]
    saved = load_checkpoint(tmp_path / "last.pt")
    assert saved["progress"]["epoch"] == 1 and saved["progress"]["finished"] is False and len(saved["progress"]["history"]) == 1
    return x, y, cfg, saved


def test_interrupted_run_resumes_at_the_next_epoch(interrupted_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y, cfg, saved = interrupted_run
    calls: list[str] = []
    weights: list[dict] = []
    count_epochs(calls, monkeypatch, weights)
    result = fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path)
    history = result.history
    assert calls == ["epoch 2/2"]  # epoch 1 is not trained again
    assert [(r["epoch"], r["step"]) for r in result.resumes] == [(2, 0)]  # the record says where the run went on
    assert len(history) == 2 and [row["epoch"] for row in history] == [1, 2]
    assert history[0] == saved["progress"]["history"][0]
    for key, value in saved["model"].items():  # epoch 2 starts from epoch 1's weights, not from a fresh model
        assert torch.equal(weights[0][key], value), key
    final = load_checkpoint(tmp_path / "last.pt")["progress"]
    assert final["finished"] is True and final["epoch"] == 2 and final["history"] == history and final["run_id"] == saved["progress"]["run_id"]


def test_resume_keeps_a_best_epoch_from_before_the_interruption(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = random_batch(48)
    cfg = lenet_config(2, patience=10)
    stub_val_accuracy([0.9, 0.5], monkeypatch)  # epoch 1 is the best; epoch 2, run after the resume, is worse
    with monkeypatch.context() as m:
        interrupt_at(2, [], m)
        with pytest.raises(Interrupted):
            fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path, checkpoint_every_s=0)
    epoch_1 = load_checkpoint(tmp_path / "last.pt")["best_weights"]
    model = fresh_lenet()
    result = fit(model, *loaders(x, y, 16), cfg, tmp_path)
    assert [row["val_acc"] for row in result.history] == [0.9, 0.5] and result.best["epoch"] == 1
    for key, value in model.state_dict().items():  # the model ends with epoch 1's weights, read back from last.pt
        assert torch.equal(value, epoch_1[key]), key


def test_resumed_schedule_continues_where_it_stopped(interrupted_run, tmp_path: Path) -> None:
    x, y, cfg, _ = interrupted_run
    resumed = fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path).history
    straight = fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path / "straight").history
    assert [row["lr"] for row in resumed] == pytest.approx([row["lr"] for row in straight])


def test_resume_restores_the_global_random_state(interrupted_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y, cfg, saved = interrupted_run
    states: list[torch.Tensor] = []
    real = train._train_epoch

    def wrapper(*args):
        states.append(torch.get_rng_state())
        return real(*args)

    monkeypatch.setattr(train, "_train_epoch", wrapper)
    torch.manual_seed(12345)  # a new kernel's generator is not where the interrupted one was
    fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path)
    assert len(states) == 1 and torch.equal(states[0], saved["rng"])  # dropout in epoch 2 draws what it would have drawn


def test_changed_config_starts_over(interrupted_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y, cfg, _ = interrupted_run
    calls: list[str] = []
    count_epochs(calls, monkeypatch)
    history = fit(fresh_lenet(), *loaders(x, y, 16), dataclasses.replace(cfg, lr=1e-3), tmp_path).history
    assert calls == ["epoch 1/2", "epoch 2/2"]
    assert [row["epoch"] for row in history] == [1, 2]


def test_weights_that_no_longer_fit_the_model_start_over_with_a_notice(interrupted_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture) -> None:
    """After a model change the saved tensors do not fit: no 'size mismatch' traceback, a clean restart."""
    x, y, cfg, _ = interrupted_run
    model = fresh_lenet()
    last = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)][-1]
    parent, _, child = last.rpartition(".")
    setattr(model.get_submodule(parent), child, torch.nn.Linear(model.get_submodule(last).in_features, 10, bias=False))  # the head lost its bias
    capsys.readouterr()
    calls: list[str] = []
    count_epochs(calls, monkeypatch)
    fit(model, *loaders(x, y, 16), cfg, tmp_path)
    assert calls == ["epoch 1/2", "epoch 2/2"]
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "other model code or shapes" in out[0] and "starts over" in out[0]


def test_changed_model_code_with_the_same_shapes_starts_over(interrupted_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y, cfg, _ = interrupted_run
    real = train.model_fingerprint.__globals__["inspect"].getsource
    monkeypatch.setattr(train.model_fingerprint.__globals__["inspect"], "getsource", lambda obj: real(obj) + "\n# edited")
    calls: list[str] = []
    count_epochs(calls, monkeypatch)
    fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path)
    assert calls == ["epoch 1/2", "epoch 2/2"]


def test_resume_false_starts_over(interrupted_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y, cfg, _ = interrupted_run
    calls: list[str] = []
    count_epochs(calls, monkeypatch)
    history = fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path, resume=False).history
    assert calls == ["epoch 1/2", "epoch 2/2"] and len(history) == 2


def test_a_finished_run_is_reused_until_reported_then_trained_afresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = random_batch(32)
    cfg = lenet_config(1)
    first = fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path)
    calls: list[str] = []
    count_epochs(calls, monkeypatch)
    model = fresh_lenet()
    again = fit(model, *loaders(x, y, 16), cfg, tmp_path)  # no record names it yet: a crash came before the record
    assert calls == [] and again.reused and again.run_id == first.run_id and again.history == first.history
    saved = load_checkpoint(tmp_path / "last.pt")["best_weights"]
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    fresh = fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path, reported_id=first.run_id)  # its record names it: a rerun
    assert calls == ["epoch 1/1"] and len(fresh.history) == 1 and fresh.run_id != first.run_id and not fresh.reused


def test_early_stopping_after_patience_epochs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = random_batch(32)
    cfg = lenet_config(6, patience=2)
    stub_val_accuracy([0.5, 0.6, 0.6, 0.55, 0.9, 0.9], monkeypatch)
    result = fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path)
    assert [row["val_acc"] for row in result.history] == [0.5, 0.6, 0.6, 0.55]  # two epochs without improvement: stop
    assert result.best["epoch"] == 2 and load_checkpoint(tmp_path / "last.pt")["progress"]["finished"] is True


@pytest.mark.parametrize("schedule", ["onecycle", "cosine"])
@pytest.mark.parametrize("steps", [1, 2, 3, 5, 6, 7, 8])
def test_schedules_run_for_any_small_number_of_steps(schedule: str, steps: int) -> None:
    cfg = lenet_config(steps, schedule=schedule)
    optimizer = train.make_optimizer(fresh_lenet(), cfg)
    scheduler = train.make_scheduler(optimizer, cfg, 1)
    lrs = []
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        lrs.append(scheduler.get_last_lr()[0])
    assert all(0 <= lr <= cfg.lr * 1.0001 for lr in lrs)


def test_optimizer_groups_skip_weight_decay_on_biases() -> None:
    cfg = lenet_config(1, weight_decay=1e-3)
    model = fresh_lenet()
    optimizer = train.make_optimizer(model, cfg)
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 1e-3 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    assert isinstance(optimizer, torch.optim.AdamW)
    assert isinstance(train.make_optimizer(model, dataclasses.replace(cfg, optimizer="sgd")), torch.optim.SGD)


def test_flip_tta_averages_the_logits_of_each_image_and_its_mirror() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 3)).eval()
    x = torch.randint(0, 256, (10, 2, 4, 4), dtype=torch.uint8)
    y = torch.arange(10) % 3
    loader = BatchLoader(x, y, 4, mean=(0.0, 0.0), std=(1.0, 1.0), device="cpu")
    plain, tta = evaluate(model, loader), evaluate(model, loader, tta="flip")
    with torch.no_grad():
        xs = torch.cat([xb for xb, _ in loader])
        expected = ((model(xs) + model(xs.flip(-1))) / 2).argmax(1)
    assert torch.equal(tta["y_pred"], expected) and torch.equal(tta["y_true"], y)
    assert not torch.equal(plain["y_pred"], expected)  # the mirror images change some predictions here


@pytest.mark.parametrize(("flags", "expected"), [
    ({"_is_avx512_bf16_supported": True, "_is_amx_tile_supported": False}, torch.bfloat16),
    ({"_is_avx512_bf16_supported": False, "_is_amx_tile_supported": True}, torch.bfloat16),
    ({"_is_avx512_bf16_supported": False, "_is_amx_tile_supported": False}, None),  # plain AVX512: bf16 only emulated, slower
])
def test_auto_precision_on_cpu_is_bf16_only_where_native(monkeypatch: pytest.MonkeyPatch, flags: dict, expected: torch.dtype | None) -> None:
    for name, value in flags.items():
        monkeypatch.setattr(torch.cpu, name, lambda value=value: value, raising=False)
    assert devices.amp_dtype("auto", "cpu") == expected
    assert devices.amp_dtype("off", "cpu") is None and devices.amp_dtype("bf16", "cpu") == torch.bfloat16  # explicit modes are obeyed


def test_cpu_wait_is_the_waited_share_of_runnable_time() -> None:
    assert devices.cpu_wait({1: (10.0, 2.0)}, {1: (13.0, 5.0)}) == 0.5  # ran 3 s and waited 3 s
    assert devices.cpu_wait({1: (10.0, 2.0)}, {1: (14.0, 2.0)}) == 0.0
    # thread 2 ended (its past is not subtracted from anything); thread 3 started in between and counts from zero
    assert devices.cpu_wait({1: (10.0, 2.0), 2: (50.0, 50.0)}, {1: (11.0, 2.0), 3: (1.0, 2.0)}) == 0.5
    assert devices.cpu_wait(None, {1: (1.0, 1.0)}) is None and devices.cpu_wait({1: (1.0, 1.0)}, {1: (1.0, 1.0)}) is None
    before = devices.sched_times()
    assert before and all(ran >= 0 and waited >= 0 for ran, waited in before.values())  # Linux reports it (the CI machines are Linux)
    sum(i * i for i in range(200_000))  # some CPU work
    after = devices.sched_times()
    assert sum(r for r, _ in after.values()) > sum(r for r, _ in before.values()) and 0.0 <= devices.cpu_wait(before, after) <= 1.0
    assert devices.wait_pct(0.437) == "44" and devices.wait_pct(None) == "—" and devices.wait_pct(float("nan")) == "—"


def test_a_device_is_checked_against_the_gpus_that_are_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DnicError, match="Unknown device 'gpu'"):
        devices.checked_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert devices.checked_device("cuda:1") == "cuda:1" and devices.checked_device("cuda") == "cuda"
    with pytest.raises(DnicError, match=r"'cuda:2' was asked for but only 2 GPU\(s\) are visible(?s:.*)cuda:0 … cuda:1"):
        devices.checked_device("cuda:2")


def test_device_labels_count_threads_in_words() -> None:
    assert devices.device_label({"type": "cpu", "name": "AMD EPYC", "threads": 1}) == "CPU (AMD EPYC, 1 thread)"
    assert devices.device_label({"type": "cpu", "name": "AMD EPYC", "threads": 2}) == "CPU (AMD EPYC, 2 threads)"
    assert devices.device_label({"type": "cuda", "name": "NVIDIA H200", "count": 1}) == "NVIDIA H200"


@pytest.mark.parametrize(("epochs", "steps"), [(1, 3), (1, 20), (3, 4), (10, 2)])
def test_every_run_has_at_least_eight_validation_points_or_one_per_step(epochs: int, steps: int) -> None:
    per_epoch = train.probe_steps(steps, epochs)
    assert per_epoch[-1] == steps and per_epoch == sorted(set(per_epoch)) and per_epoch[0] >= 1
    assert len(per_epoch) * epochs >= min(train.PROBE_POINTS, steps * epochs)


def test_the_within_epoch_slice_spans_a_class_ordered_split() -> None:
    x, _ = random_batch(160)
    y = torch.arange(10).repeat_interleave(16)  # stored class by class, as the offline CIFAR-10 JPEG copy is
    _, val_loader = loaders(x, y, 16)
    at = train.probe_index(160)  # 40 of 160
    part = val_loader.subset(at)
    assert torch.bincount(part.y, minlength=10).tolist() == [4] * 10
    assert torch.equal(part.y, val_loader.y[at]) and torch.equal(part.x, val_loader.x[at])


def test_the_images_for_data_dependent_weights_span_a_class_ordered_split() -> None:
    y = torch.arange(10).repeat_interleave(16)  # stored class by class, as the offline CIFAR-10 JPEG copy is
    x = (y * 20).to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 28, 28).contiguous()  # each image's grey level tells its class
    train_loader, _ = loaders(x, y, 16)
    grey = train_loader.images(20).mul(train_loader.std).add(train_loader.mean).mul(255)  # undo the normalisation
    classes = grey.mean(dim=(1, 2, 3)).div(20).round().long()
    assert torch.bincount(classes, minlength=10).tolist() == [2] * 10  # FastNet's whitening sees every class
    assert len(train_loader.images(1000)) == 160  # all of them, and no more, when more are asked for


def test_a_one_epoch_run_draws_a_curve_of_images_seen_and_time(tmp_path: Path) -> None:
    x, y = random_batch(160)
    model, (train_loader, val_loader) = fresh_lenet(), loaders(x, y, 16)
    result = fit(model, train_loader, val_loader, lenet_config(1), tmp_path)  # 10 steps in its one epoch
    curve = result.curve
    assert len(curve) >= train.PROBE_POINTS
    assert [p["images_seen"] for p in curve] == sorted({p["images_seen"] for p in curve}) and curve[-1]["images_seen"] == 160
    assert all(a["train_time_s"] < b["train_time_s"] for a, b in zip(curve, curve[1:])) and curve[-1]["epoch"] == 1
    slice_acc = evaluate(model, val_loader.subset(train.probe_index(160)))["acc"]  # a quarter of the 160 validation images
    assert curve[-1]["val_acc"] == pytest.approx(slice_acc)  # the epoch's last point comes from its full validation pass
    assert curve[-1]["train_time_s"] == pytest.approx(result.history[-1]["train_time_s"])  # validation time is not training time


def test_an_epochs_cpu_wait_leaves_out_its_validation_probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = {"ran": 0.0, "waited": 0.0}

    def fake_sched_times() -> dict[int, tuple[float, float]]:
        clock["ran"] += 1.0  # training runs 1 s between any two readings and never waits
        return {1: (clock["ran"], clock["waited"])}

    def waiting_evaluate(*args, **kwargs) -> dict:
        clock["waited"] += 1000.0  # every validation pass, probes included, waits long
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(train, "sched_times", fake_sched_times)
    monkeypatch.setattr(train, "evaluate", waiting_evaluate)
    x, y = random_batch(160)
    result = fit(fresh_lenet(), *loaders(x, y, 16), lenet_config(1), tmp_path)  # 10 steps, with probes among them
    assert len(result.curve) >= train.PROBE_POINTS and clock["waited"] >= 1000.0 * (train.PROBE_POINTS - 1)
    assert result.history[0]["cpu_wait"] == 0.0
    assert devices.wait_share([(3.0, 1.0), (1.0, 3.0)]) == 0.5 and devices.wait_share([(3.0, 1.0), None]) is None


def test_the_curve_survives_a_resume(interrupted_run, tmp_path: Path) -> None:
    x, y, cfg, saved = interrupted_run
    result = fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path)
    first = saved["progress"]["curve"]
    assert result.curve[: len(first)] == first and result.curve[-1]["images_seen"] == 2 * 48 and result.curve[-1]["epoch"] == 2


# --------------------------------------------------------------------------------------------------------------
# A kill within an epoch: a one-epoch run of hours goes on from its last validation point


def augmented_loaders(x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> tuple[BatchLoader, BatchLoader]:
    return (BatchLoader(x, y, 16, MEAN, STD, shuffle=True, augment=Augment(pad=2, degrees=10.0), seed=seed), BatchLoader(x, y, 256, MEAN, STD))


def test_a_pass_resumed_at_a_batch_yields_what_the_unbroken_pass_yields() -> None:
    x, y = random_batch(100)
    straight = augmented_loaders(x, y)[0]
    batches = list(straight)
    broken = augmented_loaders(x, y)[0]
    passing = iter(broken)
    for _ in range(3):
        next(passing)
    epoch_state, now = broken.epoch_state, broken.generator.get_state()  # what a checkpoint after batch 3 keeps
    resumed = augmented_loaders(x, y, seed=99)[0]  # a new process: its generator is elsewhere
    resumed.generator.set_state(now)
    resumed.resume_at(3, epoch_state)
    rest = list(resumed)
    assert len(rest) == len(batches) - 3 == 4
    for (xa, ya), (xb, yb) in zip(rest, batches[3:]):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(next(iter(resumed))[0], next(iter(straight))[0])  # and the next pass is the unbroken loader's next pass


def test_a_run_killed_within_its_one_epoch_goes_on_from_its_last_point_and_ends_as_an_unbroken_run(tmp_path: Path,
                                                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = random_batch(160)  # 10 steps of 16; validation points after steps 1, 2, 4, 5, 6, 8 and 9, then the epoch's end
    cfg = lenet_config(1)
    model = fresh_lenet()
    straight = fit(model, *augmented_loaders(x, y), cfg, tmp_path / "straight")
    real, calls = train.evaluate, []

    def dying(*args, **kwargs) -> dict:
        calls.append(1)
        if len(calls) == 4:
            raise Interrupted("killed at the fourth validation point")
        return real(*args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(train, "evaluate", dying)
        with pytest.raises(Interrupted):
            fit(fresh_lenet(), *augmented_loaders(x, y), cfg, tmp_path / "broken", checkpoint_every_s=0)
    saved = load_checkpoint(tmp_path / "broken" / "last.pt")["progress"]
    assert saved["epoch"] == 0 and saved["partial"]["step"] == 4 and saved["partial"]["seen"] == 64 and len(saved["curve"]) == 3

    resumed_model = fresh_lenet()
    torch.manual_seed(12345)  # a new kernel's global generator is not where the killed one's was
    resumed = fit(resumed_model, *augmented_loaders(x, y, seed=7), cfg, tmp_path / "broken")
    for key, value in model.state_dict().items():  # the same weights, bit for bit: the same batches, draws and steps
        assert torch.equal(resumed_model.state_dict()[key], value), key
    assert [{k: p[k] for k in ("epoch", "images_seen", "val_acc")} for p in resumed.curve] == \
        [{k: p[k] for k in ("epoch", "images_seen", "val_acc")} for p in straight.curve]
    row, unbroken = resumed.history[0], straight.history[0]
    assert row["images"] == unbroken["images"] == 160 and row["train_acc"] == unbroken["train_acc"]
    assert row["train_loss"] == pytest.approx(unbroken["train_loss"], rel=1e-6)
    assert row["train_time_s"] > saved["partial"]["train_time_s"] and resumed.run_id == saved["run_id"]
    assert straight.resumes == [] and [(r["epoch"], r["step"]) for r in resumed.resumes] == [(1, 4)]
    assert load_checkpoint(tmp_path / "broken" / "last.pt")["progress"]["partial"] is None


# --------------------------------------------------------------------------------------------------------------
# The recipe options of the one fit loop (FastNet's defaults; any run can set them)


def test_bias_lr_scales_the_peak_learning_rate_of_biases_and_norm_parameters() -> None:
    cfg = lenet_config(2, optimizer="sgd", lr=0.1, bias_lr=8.0)
    optimizer = train.make_optimizer(fresh_lenet(), cfg)
    scheduler = train.make_scheduler(optimizer, cfg, steps_per_epoch=10)
    peaks = [group["max_lr"] for group in optimizer.param_groups]
    assert peaks == pytest.approx([0.1, 0.8])
    for _ in range(20):
        optimizer.step()
        scheduler.step()
        decay, no_decay = (group["lr"] for group in optimizer.param_groups)
        assert no_decay == pytest.approx(8 * decay)  # one schedule, two peaks


def test_lookahead_keeps_more_of_the_slow_weights_as_the_run_ends() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    train.add_lookahead(optimizer, total_steps=10)
    for step in range(1, 11):
        param.grad = -torch.ones(1)  # each plain step adds 1
        optimizer.step()
        if step == 4:
            assert param.item() == pytest.approx(4.0)  # between syncs the fast weights run ahead
        if step == 5:  # halfway: the slow weights keep 0.95**5 / 8 of themselves (0) and take the rest of the fast ones (5)
            assert param.item() == pytest.approx(4.516387, abs=1e-5)
    # step 10, the end: they keep 0.95**5 of themselves (4.516387) and take 1 - 0.95**5 of the fast ones (9.516387)
    assert param.item() == pytest.approx(5.647482, abs=1e-5)
    assert optimizer.state[param]["lookahead_slow"].item() == pytest.approx(5.647482, abs=1e-5)


def test_the_triangle_schedule_rises_from_a_fifth_to_the_peak_at_23_percent_then_falls_to_7_percent() -> None:
    cfg = lenet_config(1, optimizer="sgd", lr=1.0, schedule="triangle")
    optimizer = train.make_optimizer(fresh_lenet(), cfg)
    scheduler = train.make_scheduler(optimizer, cfg, steps_per_epoch=100)
    lrs = [scheduler.get_last_lr()[0]]
    for _ in range(100):
        optimizer.step()
        scheduler.step()
        lrs.append(scheduler.get_last_lr()[0])
    assert lrs[0] == pytest.approx(0.2) and lrs[23] == pytest.approx(1.0) and max(lrs) == pytest.approx(1.0)
    assert lrs[100] == pytest.approx(0.07) and lrs[23 + 77 // 2] == pytest.approx(1.0 - 0.93 * (77 // 2) / 77)


def test_bias_decay_shrinks_biases_per_step_as_much_as_weights_and_momentum_is_set() -> None:
    cfg = lenet_config(1, optimizer="sgd", lr=0.1, weight_decay=1e-3, bias_lr=8.0, bias_decay=True, momentum=0.85)
    decay, biases = train.make_optimizer(fresh_lenet(), cfg).param_groups
    assert biases["lr"] * biases["weight_decay"] == pytest.approx(decay["lr"] * decay["weight_decay"])  # 0.8 × 1.25e-4 = 0.1 × 1e-3
    assert decay["momentum"] == biases["momentum"] == 0.85 and decay["nesterov"]
    no_decay = train.make_optimizer(fresh_lenet(), dataclasses.replace(cfg, bias_decay=False)).param_groups[1]
    assert no_decay["weight_decay"] == 0.0


def test_an_epoch_ends_with_a_lookahead_sync_that_keeps_its_last_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    train.add_lookahead(optimizer, total_steps=10)
    for _ in range(3):  # three steps, no sync yet
        param.grad = -torch.ones(1)
        optimizer.step()
    train.lookahead_sync(optimizer)  # as at an epoch's end: keep 0.95**5 * 0.3**3 of the slow 0, take the rest of the fast 3
    assert param.item() == pytest.approx(3 * (1 - 0.95 ** 5 * 0.027), abs=1e-5)
    train.lookahead_sync(torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=1.0))  # without Lookahead: nothing to do
    syncs = []
    monkeypatch.setattr(train, "lookahead_sync", lambda opt: syncs.append(opt))
    x, y = random_batch(48)
    fit(fresh_lenet(), *loaders(x, y, 16), lenet_config(2, optimizer="sgd", lr=0.05, lookahead=True), tmp_path)
    assert len(syncs) == 3  # 6 steps: the hook's sync at step 5, and fit's at the end of each of the 2 epochs


def test_a_resumed_lookahead_run_matches_an_unbroken_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = random_batch(48)
    cfg = lenet_config(2, optimizer="sgd", lr=0.05, lookahead=True, bias_lr=4.0)  # 3 steps per epoch: a sync falls inside epoch 2
    with monkeypatch.context() as m:
        interrupt_at(2, [], m)
        with pytest.raises(Interrupted):
            fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path / "broken", checkpoint_every_s=0)
    resumed, straight = fresh_lenet(), fresh_lenet()
    fit(resumed, *loaders(x, y, 16), cfg, tmp_path / "broken")
    fit(straight, *loaders(x, y, 16), cfg, tmp_path / "straight")
    for key, value in straight.state_dict().items():
        assert torch.allclose(resumed.state_dict()[key], value, atol=1e-6), key


def test_norm_layers_whose_parameters_are_frozen_keep_their_statistics() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 4, 3), torch.nn.BatchNorm2d(4))
    for p in [*model[0].parameters(), *model[1].parameters()]:
        p.requires_grad_(False)
    frozen, trained = model[1].running_mean.clone(), model[3].running_mean.clone()
    train.train_mode(model)
    model(torch.randn(8, 1, 10, 10) + 3)
    assert torch.equal(model[1].running_mean, frozen) and not model[1].training
    assert not torch.equal(model[3].running_mean, trained) and model[3].training


def test_multiview_tta_weights_the_image_half_and_each_shift_a_quarter() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(1 * 6 * 6, 3)).eval()
    x = torch.randn(5, 1, 6, 6)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    with torch.no_grad():
        def both(v):
            return (model(v) + model(v.flip(-1))) / 2
        expected = both(x) / 2 + both(padded[..., :6, :6]) / 4 + both(padded[..., 2:, 2:]) / 4
        assert torch.allclose(train.tta_logits(model, x, "multiview", flip=True), expected, atol=1e-6)
        no_flip = model(x) / 2 + model(padded[..., :6, :6]) / 4 + model(padded[..., 2:, 2:]) / 4
        assert torch.allclose(train.tta_logits(model, x, "multiview", flip=False), no_flip, atol=1e-6)
        assert torch.equal(train.tta_logits(model, x, "off", flip=True), model(x))


@pytest.mark.parametrize("tta", TTA_MODES)
@pytest.mark.parametrize("flip", [True, False])
def test_the_views_a_tta_mode_is_said_to_cost_are_the_forward_passes_it_makes(tta: str, flip: bool) -> None:
    calls = []
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 3)).eval()
    model.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        train.tta_logits(model, torch.randn(2, 1, 6, 6), tta, flip)
    assert len(calls) == tta_views(tta, flip)


# --------------------------------------------------------------------------------------------------------------
# The per-epoch hook (a pruner's way in)


class StopHere(Exception):
    """Raised by a test's on_epoch hook."""


def test_on_epoch_sees_each_history_row_and_its_exception_stops_training(tmp_path: Path) -> None:
    x, y = random_batch(32)
    cfg = lenet_config(3, patience=3)
    seen: list[dict] = []
    history = fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path / "all", on_epoch=seen.append).history
    assert seen == history and [row["epoch"] for row in seen] == [1, 2, 3]

    calls: list[int] = []

    def stop_after_two(row: dict) -> None:
        calls.append(row["epoch"])
        if row["epoch"] == 2:
            raise StopHere

    with pytest.raises(StopHere):
        fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path / "stopped", on_epoch=stop_after_two)
    assert calls == [1, 2]  # the third epoch never ran
