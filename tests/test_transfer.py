"""Cutting a net at stage boundaries: the cut's bounds, copying exactly n stages, and freezing that keeps batch-norm statistics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dnic_utils.errors import DnicError
from dnic_utils.models.imagenet import StagedNet
from dnic_utils.train import train_mode
from dnic_utils.transfer import check_cut, copy_stages, freeze_stages, max_cut, stages_of


def tiny_net(seed: int, classes: int = 4) -> StagedNet:
    """Two conv + BN stages, a stage with dropout, and a linear head, with weights drawn from a seed."""
    torch.manual_seed(seed)
    return StagedNet(
        nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()),
        nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU()),
        nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.5)),
        nn.Linear(6, classes),
    )


def stage_state(model: nn.Module, i: int) -> dict[str, torch.Tensor]:
    """A copy of the parameters and buffers of stage i."""
    return {k: v.clone() for k, v in model.stages[i].state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Equal keys and equal tensors."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_cut_ranges_over_the_stages_before_the_head() -> None:
    model = tiny_net(0)
    assert max_cut(model) == 3
    assert [check_cut(model, n) for n in range(4)] == [0, 1, 2, 3]
    for bad in (4, -1, 1.5, True, "2"):
        with pytest.raises(DnicError, match="beyond the depth") as err:
            check_cut(model, bad)
        assert "0 to 3" in err.value.fix


def test_a_net_without_stages_cannot_be_cut() -> None:
    with pytest.raises(DnicError, match="does not expose `stages`"):
        freeze_stages(nn.Linear(2, 2), 1)


@pytest.mark.parametrize("n", [0, 1, 2, 3])
def test_copying_copies_exactly_the_first_n_stages(n: int) -> None:
    source, target = tiny_net(1), tiny_net(2)
    for module in source.modules():  # running statistics are copied too
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_()
    before = [stage_state(target, i) for i in range(4)]
    keys = copy_stages(target, source.state_dict(), n)
    for i in range(4):
        expected = stage_state(source, i) if i < n else before[i]
        assert same(stage_state(target, i), expected), i
    assert len(keys) == sum(len(source.stages[i].state_dict()) for i in range(n))


def test_copying_from_another_architecture_is_a_clear_error() -> None:
    target = tiny_net(0)
    other = tiny_net(1).state_dict()
    other["1.0.weight"] = torch.zeros(7, 4, 3, 3)
    with pytest.raises(DnicError, match="do not fit the first 2 stages"):
        copy_stages(target, other, 2)
    copy_stages(target, other, 1)  # the first stage alone still fits
    with pytest.raises(DnicError, match="beyond the depth"):
        copy_stages(target, other, 4)


def training_step(model: nn.Module, seed: int = 0) -> None:
    """One SGD step in the fit loop's training mode on a random batch."""
    torch.manual_seed(seed)
    train_mode(model)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = F.cross_entropy(model(torch.randn(8, 3, 8, 8) * 3 + 1), torch.randint(0, 4, (8,)))
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_frozen_stages_keep_their_weights_and_batch_norm_statistics_through_a_training_step() -> None:
    model = tiny_net(0)
    frozen_params = sum(p.numel() for p in model.stages[0].parameters())
    assert freeze_stages(model, 1) == frozen_params
    assert not any(p.requires_grad for p in model.stages[0].parameters())
    assert all(p.requires_grad for s in model.stages[1:] for p in s.parameters())
    before = [stage_state(model, i) for i in range(4)]
    training_step(model)
    assert same(stage_state(model, 0), before[0])  # weights, running mean and variance, and the batch counter
    bn = model.stages[1][1]
    assert not torch.equal(bn.running_mean, before[1]["1.running_mean"])  # the trained stage's statistics do move
    assert int(bn.num_batches_tracked) == 1
    assert not torch.equal(model.stages[3].weight, before[3]["weight"])
    assert model.training and model.stages[1][1].training and not model.stages[0][1].training  # only the frozen norm is held in eval


def test_frozen_features_compute_as_in_eval_mode_while_the_head_trains() -> None:
    model = tiny_net(0)
    freeze_stages(model, 2)
    model.stages[2][2].p = 0.0  # no dropout: the head's input is then the frozen features alone
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        expected = model.eval()(x)
        train_mode(model)
        assert torch.equal(model(x), expected)


def test_stages_of_lists_the_stages_in_order() -> None:
    model = tiny_net(0)
    assert stages_of(model) == list(model.children())
