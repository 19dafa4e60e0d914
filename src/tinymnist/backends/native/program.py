"""The native engine's program, mapped from a model's layer description: a flat list of fused ops.

The native engine runs the layer types the registered models are made of, in the orders they use:
  conv (dense 3x3, padding 0/1; depthwise 3x3, padding 1; pointwise 1x1; a dense 3x3 with stride 2 and padding 1
  of the network input) [-> ReLU] [-> BatchNorm [-> ReLU]],
  2x2 max-pool (of the input image too), dropout, and the head: a 1x1 conv to the classes -> AdaptiveAvgPool2d(1) -> Flatten,
  or Flatten -> Linear on the whole map;
  and identity shortcuts, ReLU(body(x) + x) (zoo.Residual, PlanNet(residual=True)), around a body of the convs
  and BatchNorms above: the body's ops, then one Shortcut op that adds the input of the body's first op and
  applies the ReLU (the body's last BatchNorm is not written: the Shortcut normalizes it as it reads it).
Anything else (SiLU, other strides, a shortcut around the input image or around another shortcut) raises
Unsupported with the reason, and `--engine auto` falls back to eager PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from tinymnist.models import layers as L


class Unsupported(L.Unsupported):
    """The model has a layer or an order of layers the native engine does not run."""


def round_up(c: int, unit: int) -> int:
    """The channel stride of c channels in kernels whose vectors hold `unit` floats (tm_lanes())."""
    return (c + unit - 1) // unit * unit


MAX_CHANNELS = 64  # TM_MAX_CHANNELS in csrc/tm_kernels.h


@dataclass
class Shape:
    h: int
    w: int
    c: int  # real channels; stored with stride round_up(c, lanes), except the network input and its pools (stride 1)


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
    stride: int = 1  # 2: a dense 3x3 conv (padding 1) of the network input as stored (tm_conv_s2_*)


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
    module: nn.Conv2d | nn.Linear  # 1x1 conv to the classes, global average pooling after it; or (spatial)
    inp: Shape                     # a linear layer on the whole flattened map
    classes: int
    spatial: bool = False


@dataclass
class Shortcut:
    """ReLU(x + s): x the output of the op before (the block's body), s the input of op `start` (the
    body's first op, a conv), which has x's shape and channel stride. Gradients: the ReLU's is kept for
    the shortcut (a buffer of the Workspace) and added to op `start`'s input gradient."""

    start: int
    shape: Shape


Op = Conv | BatchNorm | MaxPool | Dropout | Head | Shortcut


def plain_input(program: list[Op], i: int) -> bool:
    """Whether op i reads the network input as it is stored, one float per pixel (stride 1): op i is
    the first op, or every op before it is a max-pool or dropout, which keep their input's layout."""
    return all(isinstance(op, (MaxPool, Dropout)) for op in program[:i])


def _conv(op: L.Conv, reads_input: bool) -> tuple[str, int, int]:
    m, k, pad = op.module, op.kernel, op.padding
    if op.stride == 2 and not (reads_input and k == 3 and pad == 1 and m.groups == 1 and m.in_channels == 1):
        raise Unsupported(f"conv {m}: stride 2 only for a dense 3x3 conv (padding 1) of the network input")
    if op.stride not in (1, 2) or k not in (1, 3):
        raise Unsupported(f"conv {m}: only stride 1 (or 2 on the network input), 1x1 or 3x3 kernels, zero padding")
    if pad > (k - 1) // 2:
        raise Unsupported(f"conv {m}: padding must be 0 or 1 (3x3) / 0 (1x1)")
    if max(m.in_channels, m.out_channels) > MAX_CHANNELS:
        raise Unsupported(f"conv {m}: more than {MAX_CHANNELS} channels")
    if m.groups == 1:
        return "dense", k, pad
    if op.depthwise and k == 3 and pad == 1 and m.bias is None:
        return "dw", 3, 1
    raise Unsupported(f"conv {m}: grouped convs other than bias-free depthwise 3x3 (padding 1)")


def _is_relu(layer: L.Layer | None) -> bool:
    return isinstance(layer, L.Activation) and layer.kind == "relu"


def lower(model: nn.Module, height: int = 28, width: int = 28, channels: int = 1) -> list[Op]:
    """The model as a native program, for inputs N x channels x height x width: its layer description
    (models/layers.py) with each conv merged with the ReLU / BatchNorm / ReLU that follow it, and each
    identity shortcut as its body's ops followed by a Shortcut op."""
    try:
        layers = L.describe(model, height, width, channels)
    except L.Unsupported as exc:
        raise Unsupported(str(exc)) from None
    ops: list[Op] = []
    i = 0
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, L.Conv) and layer.kernel == 1 and isinstance(nxt, L.GlobalAvgPool):
            m, shape = layer.module, _shape(layer.inp)
            if len(layers) != i + 2:
                raise Unsupported("the head must be conv 1x1 -> AdaptiveAvgPool2d(1) -> Flatten, last")
            if m.groups != 1 or shape.c > MAX_CHANNELS:
                raise Unsupported(f"head conv {m} does not fit its input")
            if plain_input(ops, len(ops)):  # the head kernel reads channel vectors at the padded stride
                raise Unsupported("the head straight on the input image (no conv before it)")
            ops.append(Head(m, shape, m.out_channels))
            return ops
        if isinstance(layer, L.Linear):
            fc, shape = layer.module, _shape(layer.inp)
            if len(layers) != i + 1:
                raise Unsupported("a linear layer only as the head, last")
            if plain_input(ops, len(ops)):  # the kernel reads channel vectors at the padded stride
                raise Unsupported("the head straight on the input image (no conv before it)")
            ops.append(Head(fc, shape, fc.out_features, spatial=True))
            return ops
        if isinstance(layer, L.Shortcut):
            _shortcut(layer, ops)
            i += 1
            continue
        i = _lower_layer(layers, i, ops)
    raise Unsupported("the model does not end in a 1x1 conv -> AdaptiveAvgPool2d(1) -> Flatten head or a linear head")


def _lower_layer(layers: list[L.Layer], i: int, ops: list[Op]) -> int:
    """Appends the op(s) of layers[i] (a conv with the ReLU / BatchNorm / ReLU that follow it, a max-pool
    or a dropout) to ops; returns the index of the next layer."""
    layer = layers[i]
    if isinstance(layer, L.Conv):
        kind, k, pad = _conv(layer, plain_input(ops, len(ops)))
        out = _shape(layer.out)
        j = i + 1
        relu = _is_relu(layers[j] if j < len(layers) else None)
        if relu and kind == "dw":  # the depthwise kernel applies a ReLU only as it reads its input
            raise Unsupported(f"conv {layer.module}: a ReLU straight after a depthwise conv (put a BatchNorm between)")
        j += relu
        conv = Conv(layer.module, kind, k, pad, relu, False, _shape(layer.inp), out, layer.stride)
        ops.append(conv)
        if j < len(layers) and isinstance(layers[j], L.BatchNorm):
            bn = layers[j].module  # type: ignore[union-attr]
            if bn.momentum is None or not bn.track_running_stats:
                raise Unsupported(f"{bn}: needs {out.c} features, a momentum and running statistics")
            j += 1
            relu_after = _is_relu(layers[j] if j < len(layers) else None)
            j += relu_after
            conv.stats = True
            ops.append(BatchNorm(bn, relu_after, relu, out))
        return j
    if isinstance(layer, L.MaxPool):
        # Of the input image too (the microcontroller search's "M" first): the kernels then pool one
        # float per pixel, and the first conv reads the pooled image as it reads the image.
        ops.append(MaxPool(_shape(layer.inp), _shape(layer.out)))
    elif isinstance(layer, L.Dropout):
        if layer.module.p > 0:
            ops.append(Dropout(layer.module.p, _shape(layer.shape)))
    elif isinstance(layer, L.GlobalAvgPool):
        raise Unsupported("global average pooling only in the head: conv 1x1 -> AdaptiveAvgPool2d(1) -> Flatten, last")
    elif isinstance(layer, L.Shortcut):
        raise Unsupported(f"{type(layer.module).__name__}: a shortcut inside another shortcut's body")
    else:
        raise Unsupported(f"layer {type(layer.module).__name__} is not supported here")
    return i + 1


def _shortcut(layer: L.Shortcut, ops: list[Op]) -> None:
    """Appends the ops of act(body(x) + x): the body's, then a Shortcut."""
    name = type(layer.module).__name__
    if not _is_relu(layer.act):
        raise Unsupported(f"{name}: layer {type(layer.act.module).__name__} after a shortcut is not supported here "
                          "(only ReLU)")
    start = len(ops)
    if plain_input(ops, start):  # the shortcut would add the image, stored at stride 1
        raise Unsupported(f"{name}: a shortcut around the input image (no conv before it)")
    j = 0
    while j < len(layer.body):
        j = _lower_layer(layer.body, j, ops)
    body = ops[start:]
    if not body or not isinstance(body[0], Conv) or not all(isinstance(op, (Conv, BatchNorm)) for op in body):
        raise Unsupported(f"{name}: a shortcut's body must be convs (with their BatchNorms and ReLUs), "
                          "starting with a conv")
    ops.append(Shortcut(start, _shape(layer.act.shape)))


def _shape(s: L.Shape) -> Shape:
    return Shape(s.h, s.w, s.c)


def check_supported(model: nn.Module) -> str | None:
    """None when the native engine runs this model, else the reason it does not."""
    try:
        lower(model)
    except Unsupported as exc:
        return str(exc)
    return None
