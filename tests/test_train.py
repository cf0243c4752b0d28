"""Training: a tiny run memorises its data; checkpoints; resuming an interrupted run; validated configuration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from dnic_utils import train
from dnic_utils.config import PROFILES, make_config, resolve_profile
from dnic_utils.data import BatchLoader
from dnic_utils.errors import DnicError
from dnic_utils.models import build_model
from dnic_utils.train import evaluate, fit, load_checkpoint

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
    history = fit(model, train_loader, val_loader, cfg, tmp_path / "ckpt")
    assert len(history) == 80 and [row["epoch"] for row in history] == list(range(1, 81))
    result = evaluate(model, val_loader)
    assert result["acc"] == 1.0
    assert torch.equal(result["y_pred"], y)
    assert history[-1]["train_loss"] < history[0]["train_loss"] / 10
    assert max(row["val_acc"] for row in history) == 1.0
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "train_time_s", "images_per_s"} <= set(history[0])


# --------------------------------------------------------------------------------------------------------------
# Checkpoints


def test_fit_writes_best_and_last_checkpoints(tmp_path: Path) -> None:
    x, y = random_batch(48)
    cfg = lenet_config(2)
    model = fresh_lenet()
    history = fit(model, *loaders(x, y, 16), cfg, tmp_path)
    best, last = tmp_path / "best.pt", tmp_path / "last.pt"
    assert best.is_file() and last.is_file()
    assert not list(tmp_path.glob("*.tmp"))  # atomic saves leave no temporary files

    best_saved = load_checkpoint(best)
    weights = best_saved["model"]
    state = load_checkpoint(last)
    reloaded = build_model("lenet5", 10, 1, 28)
    reloaded.load_state_dict(weights)
    reloaded.load_state_dict(state["model"])
    assert state["config"] == cfg.to_dict()
    assert state["finished"] is True
    assert state["epoch"] == len(history) == len(state["history"])
    assert state["history"] == history
    best_row = max(history, key=lambda row: row["val_acc"])
    assert state["best_epoch"] == best_row["epoch"] == best_saved["epoch"] and state["best_acc"] == best_row["val_acc"] == best_saved["val_acc"]
    for key, value in model.state_dict().items():  # fit leaves the model with the best epoch's weights
        assert torch.equal(value, weights[key]), key


def stub_val_accuracy(accs: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    """Make fit's validation report these accuracies, one per epoch."""
    values = iter(accs)
    monkeypatch.setattr(train, "evaluate", lambda model, loader, amp=None: {**evaluate(model, loader, amp), "acc": next(values)})


def test_checkpoints_are_written_at_most_every_interval_and_at_the_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = random_batch(48)
    writes: list[str] = []
    real_save = train.atomic_torch_save
    monkeypatch.setattr(train, "atomic_torch_save", lambda obj, path: (writes.append(Path(path).name), real_save(obj, path)))
    stub_val_accuracy([0.9, 0.5, 0.5], monkeypatch)
    weights: list[dict] = []
    count_epochs([], monkeypatch, weights)
    model = fresh_lenet()
    fit(model, *loaders(x, y, 16), lenet_config(3, patience=10), tmp_path, checkpoint_every_s=3600)
    assert writes == ["best.pt", "last.pt"]  # one write of each, after the last epoch
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 3
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == 1 and best["val_acc"] == 0.9
    after_epoch_1 = weights[1]  # the weights epoch 2 started from
    for key, value in model.state_dict().items():  # a copy of epoch 1's weights, kept in memory, not the live ones of epoch 3
        assert torch.equal(value, after_epoch_1[key]) and torch.equal(best["model"][key], value), key
    assert any(not torch.equal(load_checkpoint(tmp_path / "last.pt")["model"][k], v) for k, v in after_epoch_1.items())

    writes.clear()
    stub_val_accuracy([0.1, 0.2, 0.3], monkeypatch)
    fit(fresh_lenet(), *loaders(x, y, 16), lenet_config(3, patience=10), tmp_path / "every", checkpoint_every_s=0)
    assert writes == ["best.pt", "last.pt"] * 3  # every epoch improves: both files after each


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


def test_checkpoint_with_pickled_code_is_refused(tmp_path: Path) -> None:
    """weights_only loading: a checkpoint that needs arbitrary classes is reported, not executed."""
    path = tmp_path / "evil.pt"
    torch.save({"config": dataclasses.replace(lenet_config(1))}, path)  # a dataclass instance is not plain data
    with pytest.raises(DnicError) as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)


# --------------------------------------------------------------------------------------------------------------
# Resuming an interrupted run


class Interrupted(Exception):
    """Stands in for a kernel that died in the middle of epoch 2."""


def interrupt_at(epoch: int, calls: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    real = train._train_epoch

    def wrapper(model, loader, optimizer, scheduler, scaler, cfg, amp, desc):
        calls.append(desc)
        if len(calls) == epoch:
            raise Interrupted(desc)
        return real(model, loader, optimizer, scheduler, scaler, cfg, amp, desc)

    monkeypatch.setattr(train, "_train_epoch", wrapper)


def count_epochs(calls: list[str], monkeypatch: pytest.MonkeyPatch, seen_weights: list | None = None) -> None:
    real = train._train_epoch

    def wrapper(model, loader, optimizer, scheduler, scaler, cfg, amp, desc):
        calls.append(desc)
        if seen_weights is not None:
            seen_weights.append({k: v.clone() for k, v in model.state_dict().items()})
        return real(model, loader, optimizer, scheduler, scaler, cfg, amp, desc)

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
    assert saved["epoch"] == 1 and saved["finished"] is False and len(saved["history"]) == 1
    return x, y, cfg, saved


def test_interrupted_run_resumes_at_the_next_epoch(interrupted_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y, cfg, saved = interrupted_run
    calls: list[str] = []
    weights: list[dict] = []
    count_epochs(calls, monkeypatch, weights)
    history = fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path)
    assert calls == ["epoch 2/2"]  # epoch 1 is not trained again
    assert len(history) == 2 and [row["epoch"] for row in history] == [1, 2]
    assert history[0] == saved["history"][0]
    for key, value in saved["model"].items():  # epoch 2 starts from epoch 1's weights, not from a fresh model
        assert torch.equal(weights[0][key], value), key
    final = load_checkpoint(tmp_path / "last.pt")
    assert final["finished"] is True and final["epoch"] == 2 and final["history"] == history


def test_resume_keeps_a_best_epoch_from_before_the_interruption(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = random_batch(48)
    cfg = lenet_config(2, patience=10)
    stub_val_accuracy([0.9, 0.5], monkeypatch)  # epoch 1 is the best; epoch 2, run after the resume, is worse
    with monkeypatch.context() as m:
        interrupt_at(2, [], m)
        with pytest.raises(Interrupted):
            fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path, checkpoint_every_s=0)
    epoch_1 = load_checkpoint(tmp_path / "best.pt")["model"]
    model = fresh_lenet()
    history = fit(model, *loaders(x, y, 16), cfg, tmp_path)
    assert [row["val_acc"] for row in history] == [0.9, 0.5]
    for key, value in model.state_dict().items():  # the model ends with epoch 1's weights, read back from best.pt
        assert torch.equal(value, epoch_1[key]), key


def test_best_and_last_checkpoints_that_disagree_start_the_run_over(interrupted_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y, cfg, _ = interrupted_run
    best = load_checkpoint(tmp_path / "best.pt")
    train.atomic_torch_save({**best, "epoch": 2}, tmp_path / "best.pt")  # as if the run died between writing best.pt and last.pt
    calls: list[str] = []
    count_epochs(calls, monkeypatch)
    fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path)
    assert calls == ["epoch 1/2", "epoch 2/2"]


def test_resumed_schedule_continues_where_it_stopped(interrupted_run, tmp_path: Path) -> None:
    x, y, cfg, _ = interrupted_run
    resumed = fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path)
    straight = fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path / "straight")
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
    history = fit(fresh_lenet(), *loaders(x, y, 16), dataclasses.replace(cfg, lr=1e-3), tmp_path)
    assert calls == ["epoch 1/2", "epoch 2/2"]
    assert [row["epoch"] for row in history] == [1, 2]


def test_resume_false_starts_over(interrupted_run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y, cfg, _ = interrupted_run
    calls: list[str] = []
    count_epochs(calls, monkeypatch)
    history = fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path, resume=False)
    assert calls == ["epoch 1/2", "epoch 2/2"] and len(history) == 2


def test_finished_run_is_not_resumed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = random_batch(32)
    cfg = lenet_config(1)
    fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path)
    assert load_checkpoint(tmp_path / "last.pt")["finished"] is True
    calls: list[str] = []
    count_epochs(calls, monkeypatch)
    history = fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path)
    assert calls == ["epoch 1/1"] and len(history) == 1  # trained again, one row, not appended to the old history


def test_early_stopping_after_patience_epochs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = random_batch(32)
    cfg = lenet_config(6, patience=2)
    stub_val_accuracy([0.5, 0.6, 0.6, 0.55, 0.9, 0.9], monkeypatch)
    history = fit(fresh_lenet(), *loaders(x, y, 16), cfg, tmp_path)
    assert [row["val_acc"] for row in history] == [0.5, 0.6, 0.6, 0.55]  # two epochs without improvement: stop
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["best_epoch"] == 2 and state["finished"] is True


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


# --------------------------------------------------------------------------------------------------------------
# make_config


@pytest.mark.parametrize("kwargs, fragment", [
    ({"epochs": 0}, "`epochs`"),
    ({"epochs": 2.5}, "`epochs`"),
    ({"batch_size": -1}, "`batch_size`"),
    ({"optimizer": "adam"}, "optimizer 'adam'"),
    ({"schedule": "step"}, "schedule 'step'"),
    ({"amp": "fp8"}, "amp 'fp8'"),
    ({"lr": 0}, "`lr`"),
    ({"lr": -0.1}, "`lr`"),
    ({"lr": True}, "`lr`"),  # a bool is no learning rate, though Python counts it as 1
    ({"seed": -1}, "`seed`"),
    ({"label_smoothing": 1.0}, "`label_smoothing`"),
    ({"weight_decay": -1e-4}, "`weight_decay`"),
])
def test_make_config_rejects_bad_parameters(kwargs: dict, fragment: str) -> None:
    with pytest.raises(DnicError) as err:
        make_config("lenet5", "mnist", profile="smoke", **kwargs)
    assert fragment in str(err.value) and "Fix:" in str(err.value)


def test_make_config_rejects_unknown_names() -> None:
    for args, fragment in ((("alexnet", "mnist"), "alexnet"), (("lenet5", "svhn"), "svhn"), ((["lenet5"], "mnist"), "['lenet5']"),
                           (("lenet5", ["mnist"]), "['mnist']")):  # a list, as a papermill parameter may be, is no name
        with pytest.raises(DnicError) as err:
            make_config(*args, profile="smoke")
        assert fragment in str(err.value) and "Fix:" in str(err.value)


def test_unknown_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DNIC_PROFILE", raising=False)
    with pytest.raises(DnicError) as err:
        make_config("lenet5", "mnist", profile="huge")
    message = str(err.value)
    assert "'huge'" in message and "Fix:" in message
    assert all(name in message for name in PROFILES)
    monkeypatch.setenv("DNIC_PROFILE", "huge")
    with pytest.raises(DnicError):
        make_config("lenet5", "mnist", profile="smoke")


def test_dnic_profile_overrides_the_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DNIC_PROFILE", "quick")
    cfg = make_config("resnet18", "cifar10", profile="smoke")
    assert cfg.profile == "quick"
    quick = PROFILES["quick"]
    assert (cfg.epochs, cfg.batch_size, cfg.train_size, cfg.val_size, cfg.test_size, cfg.patience) == (
        quick.epochs, quick.batch_size, quick.train_size, quick.val_size, quick.test_size, quick.patience)
    monkeypatch.delenv("DNIC_PROFILE")
    assert make_config("resnet18", "cifar10", profile="smoke").profile == "smoke"


def test_auto_profile_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DNIC_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_profile("auto").name == "quick"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_profile("auto").name == "full"


def test_make_config_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DNIC_PROFILE", "quick")
    lenet = make_config("lenet5", "mnist")
    resnet = make_config("resnet18", "mnist")
    assert lenet.epochs == PROFILES["quick"].light_epochs and resnet.epochs == PROFILES["quick"].epochs
    heavy = make_config("resnet101", "mnist")
    assert resnet.train_size == PROFILES["quick"].train_size and heavy.train_size == PROFILES["quick"].heavy_train_size
    assert heavy.train_size < resnet.train_size and heavy.epochs == resnet.epochs
    assert lenet.lr == 0.05 and make_config("lenet5", "mnist", optimizer="adamw").lr == 3e-3
    assert make_config("lenet5", "mnist", batch_size=256).lr == pytest.approx(0.2)  # linear scaling with the batch
    assert make_config("lenet5", "mnist", batch_size=256, optimizer="adamw").lr == 3e-3
    assert make_config("resnet18", "cifar10", flip_tta=True).flip_tta
    with pytest.raises(DnicError, match="flip_tta"):
        make_config("resnet18", "mnist", flip_tta=True)  # digits are never trained on mirrored images
    assert make_config("lenet5", "mnist", epochs=3, batch_size=7, lr=0.01).epochs == 3
    assert make_config("lenet5", "fashion-mnist").dataset == "fashion_mnist"  # normalised, so records share one name
    assert lenet.to_dict()["arch"] == "lenet5"


def test_cuda_without_gpu_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DnicError) as err:
        make_config("lenet5", "mnist", profile="smoke", device="cuda")
    assert "no GPU" in str(err.value) and "Fix:" in str(err.value)


def test_non_default_parameters_get_their_own_run_name() -> None:
    default = make_config("resnet18", "mnist", profile="smoke")
    assert default.variant == "" and default.run_name == "mnist-resnet18"
    custom = make_config("resnet18", "mnist", profile="smoke", epochs=3, optimizer="adamw")
    assert custom.variant and custom.run_name == f"mnist-resnet18-{custom.variant}"
    assert make_config("resnet18", "mnist", profile="smoke", epochs=3, optimizer="adamw").variant == custom.variant
    assert make_config("resnet18", "mnist", profile="smoke", seed=1).variant not in ("", custom.variant)


def test_flip_tta_averages_the_logits_of_each_image_and_its_mirror() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 4 * 4, 3)).eval()
    x = torch.randint(0, 256, (10, 2, 4, 4), dtype=torch.uint8)
    y = torch.arange(10) % 3
    loader = BatchLoader(x, y, 4, mean=(0.0, 0.0), std=(1.0, 1.0), device="cpu")
    plain, tta = evaluate(model, loader), evaluate(model, loader, flip_tta=True)
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
    assert train.amp_dtype("auto", "cpu") == expected
    assert train.amp_dtype("off", "cpu") is None and train.amp_dtype("bf16", "cpu") == torch.bfloat16  # explicit modes are obeyed
