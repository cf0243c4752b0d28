"""Where a model's FLOPs and parameters go, by layer kind, measured with forward hooks on one input."""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn


def layer_kind(module: nn.Module) -> str:
    """'3×3 conv', '1×1 conv', 'depthwise 3×3', '1×7 conv', 'linear', …"""
    if isinstance(module, nn.Linear):
        return "linear"
    kh, kw = module.kernel_size
    if module.groups > 1 and module.groups == module.in_channels:
        return f"depthwise {kh}×{kw}"
    return f"{kh}×{kw} conv"


def layer_table(model: nn.Module, in_channels: int, image_size: int) -> pd.DataFrame:
    """One row per conv/linear layer run on a single image: kind, channels, output side, FLOPs and parameters."""
    rows: list[dict] = []

    def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        """Record the layer's FLOPs (a multiply-add counts as two) for this forward pass."""
        weight = module.weight
        per_output = weight[0].numel()  # (in/groups)·kh·kw for a conv, in_features for a linear layer
        rows.append({"layer": names[module], "kind": layer_kind(module), "in": weight.shape[1] * getattr(module, "groups", 1),
                     "out": weight.shape[0], "side": out.shape[-1] if out.dim() == 4 else 1,
                     "flops": 2 * per_output * out[0].numel(), "params": sum(p.numel() for p in module.parameters(recurse=False))})

    names = {m: n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    handles = [m.register_forward_hook(hook) for m in names]
    was_training = model.training
    model.eval()
    param = next(model.parameters())
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, image_size, image_size, device=param.device, dtype=param.dtype))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return pd.DataFrame(rows)


def breakdown(layers: pd.DataFrame) -> pd.DataFrame:
    """FLOPs and parameters summed by layer kind, with their shares, largest FLOPs first."""
    table = layers.groupby("kind").agg(layers=("layer", "size"), flops=("flops", "sum"), params=("params", "sum"))
    table["FLOPs share (%)"] = 100 * table["flops"] / table["flops"].sum()
    table["params share (%)"] = 100 * table["params"] / max(1, table["params"].sum())
    return table.sort_values("flops", ascending=False)


def stats(layers: pd.DataFrame) -> dict:
    """Numbers the registry's 'what to look for' texts are formatted with."""
    flops, params = layers["flops"].sum(), max(1, layers["params"].sum())
    is_dw = layers["kind"].str.startswith("depthwise").to_numpy()
    depthwise = layers[is_dw]
    # each depthwise k×k conv and the 1×1 conv after it stand in for one full k×k conv from in to that 1×1's out
    # channels, which would cost the depthwise FLOPs times the out channels
    after = layers.shift(-1)[is_dw]
    dense = (depthwise["flops"] * after["out"]).sum()
    separable = (depthwise["flops"] + after["flops"]).sum()
    by_kind = layers.groupby("kind")["flops"].sum().sort_values(ascending=False)
    wide = layers[layers["out"] >= 512]
    return {
        "layers": len(layers),
        "mflops": flops / 1e6,
        "top_kind": by_kind.index[0],
        "top_kind_share": by_kind.iloc[0] / flops,
        "pointwise_share": layers.loc[layers["kind"] == "1×1 conv", "flops"].sum() / flops,
        "depthwise_layers": len(depthwise),
        "depthwise_share": depthwise["flops"].sum() / flops,
        "separable_saving": dense / max(1, separable),
        "k3_share": layers.loc[layers["kind"] == "3×3 conv", "flops"].sum() / flops,
        "wide_param_share": wide["params"].sum() / params,
        "conv_flop_share": layers.loc[layers["kind"] != "linear", "flops"].sum() / flops,
        "linear_param_share": layers.loc[layers["kind"] == "linear", "params"].sum() / params,
        "first_side": int(layers["side"].iloc[0]),
        "last_conv_side": int(layers.loc[layers["kind"] != "linear", "side"].iloc[-1]),
    }
