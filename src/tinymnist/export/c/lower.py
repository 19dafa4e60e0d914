"""A model as a short list of float operations an integer runtime can execute.

`lower` reads an eval-mode model's layers in order and merges each conv with what follows it:
BatchNorm right after a conv is folded into its weights; ReLU becomes a clamp; a BatchNorm after
the ReLU (the article's conv-ReLU-BN order) stays a per-channel affine applied after the clamp.
Dropout is the identity at inference. The last 1x1 conv with global average pooling is the head.
An identity shortcut, ReLU(body(x) + x), becomes its body's ops followed by a FloatShortcut, as in
the native engine's program: its body must be what the runtime runs as one layer (one 3x3 conv, or a
depthwise 3x3 conv and a 1x1 conv), so that the layer adds the shortcut to each output row while the
input row is still in its ring. Anything else raises `Unsupported` naming the layer, so the export
can refuse it in one line.

Shapes: conv weights are (out, in/groups, k, k); activations are N x C x H x W in `forward`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tinymnist.models import layers as L
from tinymnist.models.fold import batchnorm_affine, fold_after
from tinymnist.models.quant import quantized


class Unsupported(L.Unsupported):
    """A layer or layer order the integer runtime has no kernel for."""


@dataclass(frozen=True)
class FloatConv:
    """y = post(conv(x) + bias) where post is: [ReLU] -> [x * scale + shift] -> [ReLU]."""

    weight: np.ndarray  # float64 (out, in/groups, k, k), BatchNorm folded in when it followed the conv
    bias: np.ndarray  # float64 (out,)
    groups: int  # 1 (dense) or in == out channels (depthwise)
    padding: int  # 0 or 1 (zeros, in the input's real-valued space)
    relu_before: bool  # ReLU before the affine (conv -> ReLU -> BatchNorm)
    scale: np.ndarray | None  # per-channel affine after that ReLU (BatchNorm that could not be folded)
    shift: np.ndarray | None
    relu_after: bool  # ReLU as the last step
    stride: int = 1  # 2 only for a dense 3x3 conv of the image (padding 1): the runtime's stem

    @property
    def kernel(self) -> int:
        return int(self.weight.shape[-1])

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def depthwise(self) -> bool:
        return self.groups > 1


@dataclass(frozen=True)
class FloatPool:
    """2x2 max-pool, stride 2 (odd sizes are floored, as nn.MaxPool2d(2) does)."""


@dataclass(frozen=True)
class FloatHead:
    """Global average pool, then a 1x1 conv (both linear, so they commute): logits = W mean(x) + b; or
    (spatial) a linear layer on the whole last map: logits = W x + b, x flattened height, width, channel
    (the runtime's order; PlanNet's head="fc")."""

    weight: np.ndarray  # float64 (classes, in), in = channels, or height * width * channels when spatial
    bias: np.ndarray  # float64 (classes,)
    spatial: bool = False
    bits: int = 8  # the bits its weights were trained for (a linear head trained for 4: head="fc4")


@dataclass(frozen=True)
class FloatShortcut:
    """ReLU(x + s): x the output of the op before it (the block's body), s the input of op `start` (the
    body's first op), of x's shape."""

    start: int


FloatOp = FloatConv | FloatPool | FloatHead | FloatShortcut


def _affine(bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode BatchNorm as x * scale + shift, in float64."""
    scale, shift = batchnorm_affine(bn, torch.float64)
    return scale.detach().numpy(), shift.detach().numpy()


def _name(index: int, layer: L.Layer) -> str:
    module = layer.module if not isinstance(layer, L.GlobalAvgPool) else nn.AdaptiveAvgPool2d(1)
    return f"#{index} {type(module).__name__}"


def _check_conv(layer: L.Conv, name: str, first: bool) -> None:
    if layer.stride == 2:  # the stem: it reads the caller's image, so only as the network's first layer
        if not (first and layer.kernel == 3 and layer.padding == 1 and layer.groups == 1 and layer.inp.c == 1):
            raise Unsupported(f"layer {name} ({layer.module}): a stride-2 conv runs only as the first layer, "
                              "a dense 3x3 conv of the image with padding 1")
        return
    ok = layer.stride == 1 and layer.kernel in (1, 3) and layer.padding in (0, 1) and (layer.groups == 1 or layer.depthwise)
    if not ok:
        raise Unsupported(f"layer {name} ({layer.module}) is not a stride-1 1x1 or 3x3 dense or depthwise conv "
                          "(or a stride-2 3x3 conv of the image)")


def _is_relu(layer: L.Layer) -> bool:
    return isinstance(layer, L.Activation) and layer.kind == "relu"


def lower(model: nn.Module) -> list[FloatOp]:
    """The model's inference as FloatConv / FloatPool / FloatShortcut ops ending in one FloatHead (a 1x1
    conv with global average pooling, or a linear layer on the flattened map), mapped from its layer
    description (models/layers.py)."""
    try:
        described = L.describe(model)
    except L.Unsupported as exc:
        raise Unsupported(str(exc)) from None
    ops: list[FloatOp] = []
    with torch.no_grad():
        if _lower_sequence(described, ops):
            return ops
    raise Unsupported("the model does not end in a 1x1 conv followed by global average pooling, or a linear layer")


def _lower_sequence(described: list[L.Layer], ops: list[FloatOp]) -> bool:
    """Appends the ops of `described` to `ops`; True when they end in the head."""
    layers = [layer for layer in described if not isinstance(layer, L.Dropout)]
    i = 0
    while i < len(layers):
        layer, name = layers[i], _name(i, layers[i])
        if isinstance(layer, L.MaxPool):
            ops.append(FloatPool())
            i += 1
            continue
        if isinstance(layer, L.Shortcut):
            _lower_shortcut(layer, name, ops)
            i += 1
            continue
        if isinstance(layer, L.Linear):
            if i != len(layers) - 1:
                raise Unsupported(f"layer {name}: a linear layer only as the head, last")
            fc, shape = layer.module, layer.inp
            # PyTorch flattens channel, height, width; the runtime's map is height, width, channel
            weight = fc.weight.detach().double()
            if layer.bits < 8:  # trained for fewer bits: the model computes with the rounded weights
                weight = quantized(weight, layer.bits)
            weight = weight.numpy().reshape(fc.out_features, shape.c, shape.h, shape.w)
            head_bias = fc.bias.detach().double().numpy() if fc.bias is not None else np.zeros(fc.out_features)
            ops.append(FloatHead(np.ascontiguousarray(weight.transpose(0, 2, 3, 1).reshape(fc.out_features, -1)),
                                 head_bias, spatial=True, bits=layer.bits))
            return True
        if not isinstance(layer, L.Conv):
            raise Unsupported(f"layer {name} has no integer kernel (supported: conv, BatchNorm, ReLU, max-pool, "
                              "dropout, identity shortcut, global average pool)")
        _check_conv(layer, name, first=not ops)
        conv = layer.module
        rest = layers[i + 1:]
        weight = conv.weight.detach().double()
        bias = conv.bias.detach().double() if conv.bias is not None else None
        if rest and isinstance(rest[0], L.GlobalAvgPool):
            if layer.kernel != 1 or layer.groups != 1 or len(rest) != 1:
                raise Unsupported("the model must end in a 1x1 conv, global average pooling and flatten")
            head_bias = bias.numpy() if bias is not None else np.zeros(conv.out_channels)
            ops.append(FloatHead(weight.numpy()[:, :, 0, 0], head_bias))
            return True
        i += 1
        if i < len(layers) and isinstance(layers[i], L.BatchNorm):
            weight, bias = fold_after(weight, bias, *batchnorm_affine(layers[i].module, torch.float64))  # type: ignore[union-attr]
            i += 1
        relu_before = relu_after = False
        scale = shift = None
        if i < len(layers) and _is_relu(layers[i]):
            i += 1
            if i < len(layers) and isinstance(layers[i], L.BatchNorm):
                relu_before = True
                scale, shift = _affine(layers[i].module)  # type: ignore[union-attr]
                i += 1
            else:
                relu_after = True
        bias_np = bias.numpy() if bias is not None else np.zeros(conv.out_channels)
        ops.append(FloatConv(weight.numpy(), bias_np, layer.groups, layer.padding, relu_before, scale, shift, relu_after,
                             layer.stride))
    return False


def _lower_shortcut(layer: L.Shortcut, name: str, ops: list[FloatOp]) -> None:
    """Appends the ops of ReLU(body(x) + x): the body's, then a FloatShortcut."""
    if not _is_relu(layer.act):
        raise Unsupported(f"layer {name}: {type(layer.act.module).__name__} after a shortcut has no integer kernel "
                          "(only ReLU)")
    if not any(isinstance(op, FloatConv) for op in ops):  # the image's real values carry the normalization's offset
        raise Unsupported(f"layer {name}: a shortcut around the input image (no conv before it) has no integer kernel")
    body: list[FloatOp] = []
    if _lower_sequence(layer.body, body) or not _one_layer(body):
        raise Unsupported(f"layer {name}: a shortcut has an integer kernel only around one 3x3 conv (padding 1) or one "
                          "depthwise 3x3 conv (padding 1) and the 1x1 conv after it, with their BatchNorms")
    ops += body
    ops.append(FloatShortcut(len(ops) - len(body)))


def _one_layer(body: list[FloatOp]) -> bool:
    """Whether the runtime runs these ops as one layer that keeps its input rows in its ring: a dense 3x3
    conv with padding 1, or a depthwise one followed by a 1x1 conv (codegen groups that pair)."""
    if not body or not all(isinstance(op, FloatConv) for op in body):
        return False
    first = body[0]
    assert isinstance(first, FloatConv)
    if first.kernel != 3 or first.padding != 1:
        return False
    if len(body) == 1:
        return not first.depthwise
    second = body[1]
    assert isinstance(second, FloatConv)
    return len(body) == 2 and first.depthwise and second.kernel == 1 and not second.depthwise


def _post(op: FloatConv, y: torch.Tensor) -> torch.Tensor:
    if op.relu_before:
        y = y.clamp_min(0)
    if op.scale is not None and op.shift is not None:
        y = y * torch.from_numpy(op.scale).view(1, -1, 1, 1) + torch.from_numpy(op.shift).view(1, -1, 1, 1)
    return y.clamp_min(0) if op.relu_after else y


def forward(ops: list[FloatOp], x: torch.Tensor, record: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Float64 inference of the lowered ops on normalized N x 1 x H x W input; `record` collects each
    op's output (the tensors the integer runtime stores as int8), in order."""
    starts = {op.start for op in ops if isinstance(op, FloatShortcut)}
    blocks: dict[int, torch.Tensor] = {}  # the input of each shortcut's first op
    for i, op in enumerate(ops):
        if i in starts:
            blocks[i] = x
        if isinstance(op, FloatShortcut):
            x = (x + blocks[op.start]).clamp_min(0)
        elif isinstance(op, FloatPool):
            x = F.max_pool2d(x, 2)
        elif isinstance(op, FloatHead) and op.spatial:
            x = x.permute(0, 2, 3, 1).flatten(1) @ torch.from_numpy(op.weight).T + torch.from_numpy(op.bias)
        elif isinstance(op, FloatHead):
            x = x.mean((2, 3)) @ torch.from_numpy(op.weight).T + torch.from_numpy(op.bias)
        else:
            x = _post(op, F.conv2d(x, torch.from_numpy(op.weight), torch.from_numpy(op.bias),
                                   stride=op.stride, padding=op.padding, groups=op.groups))
        if record is not None:
            record.append(x)
    return x
