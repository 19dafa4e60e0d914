"""Lowering a model to the native engine's program: a flat list of ops with their shapes.

The native engine runs the layer types the registered models are made of, in the orders they use:
  conv (dense 3x3, padding 0/1; depthwise 3x3, padding 1; pointwise 1x1) [-> ReLU] [-> BatchNorm [-> ReLU]],
  2x2 max-pool, dropout, and the head: a 1x1 conv to the classes -> AdaptiveAvgPool2d(1) -> Flatten.
Anything else (a residual shortcut, SiLU, strides) raises Unsupported with the reason, and
`--engine auto` falls back to eager PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from tinymnist.models.zoo import PlanNet, ReferenceNet


class Unsupported(ValueError):
    """The model has a layer or an order of layers the native engine does not run."""


def round_up(c: int, unit: int) -> int:
    """The channel stride of c channels in kernels whose vectors hold `unit` floats (tm_lanes())."""
    return (c + unit - 1) // unit * unit


MAX_CHANNELS = 64  # TM_MAX_CHANNELS in csrc/tm_kernels.h


@dataclass
class Shape:
    h: int
    w: int
    c: int  # real channels; stored with stride round_up(c, lanes), except the network input (stride 1)


@dataclass
class Conv:
    module: nn.Conv2d
    kind: str  # "dense" (k = 1 or 3) | "dw" (depthwise 3x3)
    k: int
    pad: int
    relu: bool  # conv -> ReLU (the reference net's order)
    stats: bool  # a BatchNorm follows: accumulate its statistics while writing the output
    inp: Shape
    out: Shape


@dataclass
class BatchNorm:
    module: nn.BatchNorm2d
    relu_after: bool  # BatchNorm -> ReLU
    relu_before: bool  # its input is a ReLU output (conv -> ReLU -> BatchNorm)
    shape: Shape


@dataclass
class MaxPool:
    inp: Shape
    out: Shape


@dataclass
class Dropout:
    p: float
    shape: Shape


@dataclass
class Head:
    module: nn.Conv2d  # 1x1 conv to the classes; global average pooling follows
    inp: Shape
    classes: int


Op = Conv | BatchNorm | MaxPool | Dropout | Head


def flat_layers(model: nn.Module) -> list[nn.Module]:
    """The model's layers in order, for models whose forward is exactly `self.net(x)` (or a Sequential)."""
    if isinstance(model, nn.Sequential):
        body = model
    elif isinstance(model, (ReferenceNet, PlanNet)):  # forward(x) = self.net(x)
        body = model.net
    else:
        raise Unsupported(f"{type(model).__name__} is not a registered sequence of layers")
    layers: list[nn.Module] = []
    for m in body:
        layers += flat_layers(m) if isinstance(m, nn.Sequential) else [m]
    return layers


def _conv(m: nn.Conv2d, shape: Shape) -> tuple[str, int, int]:
    k = m.kernel_size
    if m.stride != (1, 1) or m.dilation != (1, 1) or k[0] != k[1] or k[0] not in (1, 3) or m.padding_mode != "zeros":
        raise Unsupported(f"conv {m}: only stride 1, 1x1 or 3x3 kernels, zero padding")
    pad = m.padding[0] if isinstance(m.padding, tuple) else None
    if pad is None or m.padding != (pad, pad) or pad > (k[0] - 1) // 2:
        raise Unsupported(f"conv {m}: padding must be 0 or 1 (3x3) / 0 (1x1)")
    if m.in_channels != shape.c:
        raise Unsupported(f"conv {m} expects {m.in_channels} channels, gets {shape.c}")
    if max(m.in_channels, m.out_channels) > MAX_CHANNELS:
        raise Unsupported(f"conv {m}: more than {MAX_CHANNELS} channels")
    if m.groups == 1:
        return "dense", k[0], pad
    if m.groups == m.in_channels == m.out_channels and k[0] == 3 and pad == 1 and m.bias is None:
        return "dw", 3, 1
    raise Unsupported(f"conv {m}: grouped convs other than bias-free depthwise 3x3 (padding 1)")


def lower(model: nn.Module, height: int = 28, width: int = 28, channels: int = 1) -> list[Op]:
    """The model as a native program, for inputs N x channels x height x width."""
    layers = flat_layers(model)
    ops: list[Op] = []
    shape = Shape(height, width, channels)
    i = 0
    while i < len(layers):
        m = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and isinstance(nxt, nn.AdaptiveAvgPool2d):
            rest = layers[i + 1 :]
            if not (nxt.output_size in (1, (1, 1)) and len(rest) == 2 and isinstance(rest[1], nn.Flatten)):
                raise Unsupported("the head must be conv 1x1 -> AdaptiveAvgPool2d(1) -> Flatten, last")
            if m.groups != 1 or m.in_channels != shape.c or shape.c > MAX_CHANNELS:
                raise Unsupported(f"head conv {m} does not fit its input")
            ops.append(Head(m, shape, m.out_channels))
            return ops
        if isinstance(m, nn.Conv2d):
            kind, k, pad = _conv(m, shape)
            out = Shape(shape.h + 2 * pad - k + 1, shape.w + 2 * pad - k + 1, m.out_channels)
            j = i + 1
            relu = j < len(layers) and type(layers[j]) is nn.ReLU
            j += relu
            conv = Conv(m, kind, k, pad, relu, False, shape, out)
            ops.append(conv)
            if j < len(layers) and isinstance(layers[j], nn.BatchNorm2d):
                bn = layers[j]
                if bn.num_features != out.c or bn.momentum is None or not bn.track_running_stats:
                    raise Unsupported(f"{bn}: needs {out.c} features, a momentum and running statistics")
                j += 1
                relu_after = j < len(layers) and type(layers[j]) is nn.ReLU
                j += relu_after
                conv.stats = True
                ops.append(BatchNorm(bn, relu_after, relu, out))
            shape, i = out, j
            continue
        if isinstance(m, nn.MaxPool2d):
            if m.kernel_size not in (2, (2, 2)) or m.stride not in (2, (2, 2)) or m.padding not in (0, (0, 0)) \
                    or m.dilation not in (1, (1, 1)) or m.ceil_mode:
                raise Unsupported(f"{m}: only 2x2 max-pooling with stride 2")
            out = Shape(shape.h // 2, shape.w // 2, shape.c)
            ops.append(MaxPool(shape, out))
            shape = out
        elif isinstance(m, nn.Dropout):
            if m.p > 0:
                ops.append(Dropout(m.p, shape))
        elif isinstance(m, nn.Identity):
            pass
        else:
            raise Unsupported(f"layer {type(m).__name__} is not supported here")
        i += 1
    raise Unsupported("the model does not end in a 1x1 conv -> AdaptiveAvgPool2d(1) -> Flatten head")


def check_supported(model: nn.Module) -> str | None:
    """None when the native engine runs this model, else the reason it does not."""
    try:
        lower(model)
    except Unsupported as exc:
        return str(exc)
    return None
