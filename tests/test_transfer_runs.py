"""Transfer runs through the one run path: RunConfig's transfer parameters, copying and freezing in fit, provenance, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dnic_utils.config import make_config
from dnic_utils.errors import DnicError
from dnic_utils.experiment import run
from dnic_utils.models import build_model
from dnic_utils.settings import checkpoint_dir
from dnic_utils.train import make_optimizer, make_scheduler
from dnic_utils.files import file_sha256

TINY = {"train_size": 64, "val_size": 64, "test_size": 50, "batch_size": 16, "epochs": 1, "tta": "off"}


def test_transfer_parameters_without_a_source_are_a_clear_error() -> None:
    for params in ({"freeze": 2}, {"cut": 1}, {"copied_lr": 0.1}):
        with pytest.raises(DnicError, match="no `source` is set"):
            make_config("fastnet", "cifar10", "smoke", **params)
    with pytest.raises(DnicError, match="Unknown classes 'animals'"):
        make_config("fastnet", "cifar10", "smoke", classes="animals")
    with pytest.raises(DnicError, match="must be a name"):
        make_config("fastnet", "cifar10", "smoke", source="../elsewhere")
    cfg = make_config("fastnet", "cifar10", "smoke", source="cifar10-fastnet", cut=2, freeze=2, classes="vehicles:B", schedule="constant")
    assert cfg.run_name != make_config("fastnet", "cifar10", "smoke", source="cifar10-fastnet", cut=2, classes="vehicles:B").run_name


def test_copied_stages_get_their_own_learning_rate_and_a_constant_schedule_stays_constant() -> None:
    model = build_model("fastnet", 10, 3, 32)
    cfg = make_config("fastnet", "cifar10", "smoke", source="cifar10-fastnet", cut=2, copied_lr=0.1, schedule="constant", lr=0.2)
    opt = make_optimizer(model, cfg)
    copied = {id(p) for stage in model.stages[:2] for p in stage.parameters() if p.requires_grad}
    for group in opt.param_groups:
        inside = {id(p) in copied for p in group["params"]}
        assert len(inside) <= 1
        if inside == {True}:
            assert group["lr"] == pytest.approx(0.2 * 0.1 * (1 if all(p.ndim > 1 for p in group["params"]) else cfg.bias_lr))
    assert sum(len(g["params"]) for g in opt.param_groups) == sum(1 for p in model.parameters() if p.requires_grad)
    scheduler = make_scheduler(opt, cfg, steps_per_epoch=10)
    before = [g["lr"] for g in opt.param_groups]
    for _ in range(5):
        opt.step()
        scheduler.step()
    assert [g["lr"] for g in opt.param_groups] == before


@pytest.fixture(scope="module")
def source_run(tmp_path_factory: pytest.TempPathFactory, fixture_root: Path) -> tuple:
    """A tiny fast-net run on half A of the random split, in a scratch project of its own."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DNIC_PROJECT_DIR", str(tmp_path_factory.mktemp("transfer-project")))
    mp.setenv("DNIC_CACHE_DIR", str(tmp_path_factory.mktemp("transfer-cache")))
    cfg = make_config("fastnet", "cifar10", "smoke", classes="random:A", **TINY)
    exp = run(cfg, str(fixture_root))
    yield cfg, exp, mp
    mp.undo()


def test_a_transfer_run_copies_and_freezes_stages_and_records_its_provenance(source_run: tuple, fixture_root: Path) -> None:
    source_cfg, source, _ = source_run
    assert source.splits.classes == ("bird", "cat", "frog", "ship", "truck")
    cfg = make_config("fastnet", "cifar10", "smoke", classes="random:B", source=source_cfg.run_name, cut=3, freeze=2, seed=7, **TINY)
    exp = run(cfg, str(fixture_root))
    entry = exp.record["transfer"]
    best = checkpoint_dir("smoke", source_cfg.run_name) / "best.pt"
    assert entry["weights"]["source"] == source_cfg.run_name and entry["weights"]["sha256"] == file_sha256(best)
    assert (entry["cut"], entry["frozen_stages"], exp.record["config"]["classes"]) == (3, 2, "random:B")
    held = [p for s in exp.model.stages[:2] for p in s.parameters()]
    assert not any(p.requires_grad for p in held) and 0 < entry["frozen_params"] <= sum(p.numel() for p in held)  # some were frozen by design
    m = exp.record["metrics"]
    assert m["trainable_params"] == sum(p.numel() for p in exp.model.parameters() if p.requires_grad) < m["params"]  # as trained: frozen ones out
    src, out = source.model.state_dict(), exp.model.state_dict()
    frozen = [k for k in out if k.split(".")[0] in ("0", "1")]
    assert frozen and all(torch.equal(out[k].cpu(), src[k].cpu()) for k in frozen)  # weights and batch-norm statistics of the frozen stages
    tuned = [k for k in out if k.startswith("2.") and k.endswith("running_mean")]
    assert tuned and not all(torch.equal(out[k].cpu(), src[k].cpu()) for k in tuned)  # copied but fine-tuned: they moved
    assert exp.splits.mean == source.splits.mean  # the inputs are normalised as the source's were


@pytest.mark.parametrize(("params", "message"), [
    ({"cut": 5}, "beyond the depth of FastNet"),
    ({"cut": 2, "freeze": 3}, "more stages than the 2 copied"),
    ({"labels_per_class": 10_000}, "above the class size"),
])
def test_bad_transfer_runs_fail_before_training_with_a_clear_error(source_run: tuple, fixture_root: Path, params: dict, message: str) -> None:
    source_cfg = source_run[0]
    params = {"source": source_cfg.run_name, **params} if "labels_per_class" not in params else params
    with pytest.raises(DnicError, match=message):
        run(make_config("fastnet", "cifar10", "smoke", classes="random:B", **{**TINY, **params}), str(fixture_root))


def test_a_missing_source_run_or_imagenet_weights_for_another_net_are_clear_errors(source_run: tuple, fixture_root: Path) -> None:
    with pytest.raises(DnicError, match="No trained weights of the source run 'cifar10-nothing'"):
        run(make_config("fastnet", "cifar10", "smoke", source="cifar10-nothing", **TINY), str(fixture_root))
    with pytest.raises(DnicError, match="no ImageNet weights for the architecture 'fastnet'") as err:
        run(make_config("fastnet", "cifar10", "smoke", source="imagenet", **TINY), str(fixture_root))
    assert "efficientnet_lite0" in err.value.fix
    with pytest.raises(DnicError, match="trained 'fastnet', not 'efficientnet_lite0'"):
        run(make_config("efficientnet_lite0", "cifar10", "smoke", source=source_run[0].run_name, **TINY), str(fixture_root))
