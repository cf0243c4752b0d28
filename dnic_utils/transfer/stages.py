"""Transfer operations on a net's ordered stages: copy the first n from another net's weights, freeze the first n.

A net that can be cut exposes `stages`, the ordered list of its stage modules, the last being its head (the task's
own classifier, never copied or frozen). A cut n keeps stages 0..n-1 of the source: 0 ≤ n ≤ len(stages) - 1.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..errors import DnicError


def stages_of(model: nn.Module) -> list[nn.Module]:
    """The model's stages, or a clear error for a net that does not expose them."""
    stages = getattr(model, "stages", None)
    if not stages:
        raise DnicError(f"{type(model).__name__} does not expose `stages`, so it cannot be cut for transfer.",
                        "use a net that lists its stage modules in order as `model.stages` (fastnet, or an ImageNet source).")
    return list(stages)


def max_cut(model: nn.Module) -> int:
    """The deepest cut: every stage but the head."""
    return len(stages_of(model)) - 1


def run_cut(model: nn.Module, cut: int | None) -> int:
    """The stages a transfer run copies: its `cut`, checked, or every stage but the head when None."""
    return check_cut(model, max_cut(model) if cut is None else cut)


def check_cut(model: nn.Module, n: object) -> int:
    """n itself when it is a whole number from 0 to the net's depth (its stages less the head), else a clear error."""
    deepest = max_cut(model)
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= deepest:
        raise DnicError(f"A cut after {n!r} stages is beyond the depth of {type(model).__name__}: it has {deepest} stages before its head.",
                        f"cut after 0 to {deepest} stages.")
    return n


def stage_prefixes(model: nn.Module) -> list[str]:
    """The state-dict prefix ('1.', 'layer1.', …) of each stage, found by identity among the model's submodules."""
    names = {id(module): name for name, module in model.named_modules()}
    prefixes = []
    for i, stage in enumerate(stages_of(model)):
        if id(stage) not in names or not names[id(stage)]:
            raise DnicError(f"Stage {i} of {type(model).__name__} is not one of its submodules.", "list submodules of the net in `stages`.")
        prefixes.append(names[id(stage)] + ".")
    return prefixes


def copy_stages(target: nn.Module, source_state: Mapping[str, torch.Tensor], n: int) -> list[str]:
    """Copy the first n stages' parameters and buffers from a source state dict (same net, other weights); return the keys copied."""
    check_cut(target, n)
    own = target.state_dict()
    keys = [k for prefix in stage_prefixes(target)[:n] for k in own if k.startswith(prefix)]
    missing = [k for k in keys if k not in source_state]
    wrong = [k for k in keys if k in source_state and source_state[k].shape != own[k].shape]
    if missing or wrong:
        names = ", ".join((missing + wrong)[:3]) + (", …" if len(missing + wrong) > 3 else "")
        raise DnicError(f"The source weights do not fit the first {n} stages of {type(target).__name__} "
                        f"({len(missing)} tensor(s) missing, {len(wrong)} of another shape: {names}).",
                        "copy from weights of the same architecture and input channels (a run of the same net).")
    with torch.no_grad():
        for k in keys:
            own[k].copy_(source_state[k])
    return keys


def freeze_stages(model: nn.Module, n: int) -> int:
    """Freeze the first n stages (no gradients); return the parameters frozen.

    The fit loop's train_mode keeps batch-norm layers whose parameters are all frozen in eval mode, so their running
    statistics stay those of the source.
    """
    frozen = 0
    for stage in stages_of(model)[: check_cut(model, n)]:
        for p in stage.parameters():
            frozen += p.numel() if p.requires_grad else 0
            p.requires_grad_(False)
    return frozen
