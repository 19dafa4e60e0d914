"""Describe a model by running it: per-layer output shape, parameters, MACs, receptive field, jump.

Nothing is typed in. Forward hooks on the leaf modules record what each layer produced; the
receptive field follows the standard recurrence r_out = r_in + (k - 1) * j_in, j_out = j_in * s
(with dilation d, k is replaced by d * (k - 1) + 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class LayerRow:
    name: str  # dotted module path
    kind: str  # module class name
    output_shape: tuple[int, ...]  # per image (no batch dim)
    params: int
    macs: int  # multiply-accumulates per image
    receptive_field: int | None  # in input pixels; None once pooling is global
    jump: int | None  # distance in input pixels between neighbouring outputs


@dataclass(frozen=True)
class Summary:
    rows: list[LayerRow]
    params: int
    trainable_params: int
    macs: int
    activation_bytes: int  # float32 outputs of all layers, one image
    receptive_field: int  # of the last spatial layer

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return format_table(self)

    def _repr_markdown_(self) -> str:  # a notebook shows the table
        return format_table(self)


def _pair(value: Any) -> int:
    return value[0] if isinstance(value, tuple) else int(value)


def layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output[0].numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0


def summarize(model: nn.Module, input_shape: tuple[int, ...] = (1, 28, 28)) -> Summary:
    leaves = [(name, m) for name, m in model.named_modules() if not list(m.children())]
    calls: list[tuple[str, nn.Module, torch.Tensor, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: calls.append((name, mod, inp[0], out)))
             for name, m in leaves]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)

    rows = []
    rf: int | None = 1
    jump: int | None = 1
    last_spatial_rf = 1
    seen: set[int] = set()
    for name, module, inp, out in calls:
        if rf is not None and jump is not None:
            if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
                k, s, d = _pair(module.kernel_size), _pair(module.stride), _pair(getattr(module, "dilation", 1))
                rf = rf + (d * (k - 1)) * jump
                jump = jump * s
                last_spatial_rf = rf
            elif isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)) and out.shape[-2:] != inp.shape[-2:]:
                rf, jump = None, None  # global pooling: every output sees the whole input
        # A module called again (PlanNet's "r": shared weights) costs MACs each time, parameters once.
        params = 0 if id(module) in seen else sum(p.numel() for p in module.parameters(recurse=False))
        name = f"{name} (again)" if id(module) in seen else name
        seen.add(id(module))
        rows.append(LayerRow(name, type(module).__name__, tuple(out.shape[1:]), params, layer_macs(module, out), rf, jump))
    return Summary(
        rows=rows,
        params=sum(p.numel() for p in model.parameters()),
        trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        macs=sum(r.macs for r in rows),
        activation_bytes=sum(4 * int(torch.Size(r.output_shape).numel()) for r in rows),
        receptive_field=last_spatial_rf,
    )


def format_table(summary: Summary) -> str:
    """A plain-text (Markdown) table of the summary."""
    lines = ["| layer | type | output | params | MACs | RF | jump |", "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in summary.rows:
        shape = "x".join(str(d) for d in r.output_shape)
        rf = "global" if r.receptive_field is None else str(r.receptive_field)
        jump = "-" if r.jump is None else str(r.jump)
        lines.append(f"| {r.name} | {r.kind} | {shape} | {r.params:,} | {r.macs:,} | {rf} | {jump} |")
    lines.append(f"| **total** | | | **{summary.params:,}** | **{summary.macs:,}** | {summary.receptive_field} | |")
    return "\n".join(lines)
