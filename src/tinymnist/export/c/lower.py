"""A model as a short list of float operations an integer runtime can execute.

`lower` reads an eval-mode model's layers in order and merges each conv with what follows it:
BatchNorm right after a conv is folded into its weights; ReLU becomes a clamp; a BatchNorm after
the ReLU (the article's conv-ReLU-BN order) stays a per-channel affine applied after the clamp.
Dropout is the identity at inference. The last 1x1 conv with global average pooling is the head.
Anything else raises `Unsupported` naming the layer, so the export can refuse it in one line.

Shapes: conv weights are (out, in/groups, k, k); activations are N x C x H x W in `forward`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Unsupported(ValueError):
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
    """Global average pool, then a 1x1 conv (both linear, so they commute): logits = W mean(x) + b."""

    weight: np.ndarray  # float64 (classes, in)
    bias: np.ndarray  # float64 (classes,)


FloatOp = FloatConv | FloatPool | FloatHead


def _flat_layers(model: nn.Module) -> list[nn.Module]:
    body = getattr(model, "net", model)
    if not isinstance(body, nn.Sequential):
        raise Unsupported(f"model {type(model).__name__} is not a sequence of layers")
    layers: list[nn.Module] = []
    for layer in body:
        layers += _flat_layers(layer) if isinstance(layer, nn.Sequential) else [layer]
    return [layer for layer in layers if not isinstance(layer, nn.Dropout)]


def _affine(bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode BatchNorm as x * scale + shift."""
    assert bn.running_mean is not None and bn.running_var is not None
    mean, var = bn.running_mean.double().numpy(), bn.running_var.double().numpy()
    scale = 1.0 / np.sqrt(var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double().numpy()
    shift = -mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias.detach().double().numpy()
    return scale, shift


def _check_conv(conv: nn.Conv2d, name: str) -> None:
    k = conv.kernel_size
    ok = (conv.stride in ((1, 1), 1) and conv.dilation in ((1, 1), 1) and k[0] == k[1] and k[0] in (1, 3)
          and conv.padding_mode == "zeros" and conv.padding in ((0, 0), (1, 1), 0, 1)
          and (conv.groups == 1 or conv.groups == conv.in_channels == conv.out_channels))
    if not ok:
        raise Unsupported(f"layer {name} ({conv}) is not a stride-1 1x1 or 3x3 dense or depthwise conv")


def lower(model: nn.Module) -> list[FloatOp]:
    """The model's inference as FloatConv / FloatPool ops ending in one FloatHead."""
    layers = _flat_layers(model)
    ops: list[FloatOp] = []
    i = 0
    while i < len(layers):
        layer, name = layers[i], f"#{i} {type(layers[i]).__name__}"
        if isinstance(layer, nn.MaxPool2d):
            if layer.kernel_size not in (2, (2, 2)) or layer.stride not in (2, (2, 2)) or layer.padding not in (0, (0, 0)) \
                    or layer.ceil_mode or layer.dilation not in (1, (1, 1)):
                raise Unsupported(f"layer {name} ({layer}) is not a plain 2x2 max-pool")
            ops.append(FloatPool())
            i += 1
            continue
        if not isinstance(layer, nn.Conv2d):
            raise Unsupported(f"layer {name} has no integer kernel (supported: conv, BatchNorm, ReLU, max-pool, dropout, "
                              "global average pool)")
        _check_conv(layer, name)
        rest = layers[i + 1:]
        if len(rest) >= 2 and isinstance(rest[0], nn.AdaptiveAvgPool2d) and isinstance(rest[1], nn.Flatten):
            if layer.kernel_size != (1, 1) or layer.groups != 1 or rest[0].output_size not in (1, (1, 1)) \
                    or len(rest) != 2:
                raise Unsupported("the model must end in a 1x1 conv, global average pooling and flatten")
            bias = layer.bias.detach().double().numpy() if layer.bias is not None else np.zeros(layer.out_channels)
            ops.append(FloatHead(layer.weight.detach().double().numpy()[:, :, 0, 0], bias))
            return ops
        weight = layer.weight.detach().double().numpy()
        bias = layer.bias.detach().double().numpy() if layer.bias is not None else np.zeros(layer.out_channels)
        i += 1
        if i < len(layers) and isinstance(layers[i], nn.BatchNorm2d):
            scale, shift = _affine(layers[i])
            weight, bias = weight * scale[:, None, None, None], bias * scale + shift
            i += 1
        relu_before = relu_after = False
        scale = shift = None
        if i < len(layers) and isinstance(layers[i], nn.ReLU):
            i += 1
            if i < len(layers) and isinstance(layers[i], nn.BatchNorm2d):
                relu_before = True
                scale, shift = _affine(layers[i])
                i += 1
            else:
                relu_after = True
        padding = layer.padding[0] if isinstance(layer.padding, tuple) else int(layer.padding)
        ops.append(FloatConv(weight, bias, layer.groups, padding, relu_before, scale, shift, relu_after))
    raise Unsupported("the model does not end in a 1x1 conv followed by global average pooling")


def _post(op: FloatConv, y: torch.Tensor) -> torch.Tensor:
    if op.relu_before:
        y = y.clamp_min(0)
    if op.scale is not None and op.shift is not None:
        y = y * torch.from_numpy(op.scale).view(1, -1, 1, 1) + torch.from_numpy(op.shift).view(1, -1, 1, 1)
    return y.clamp_min(0) if op.relu_after else y


def forward(ops: list[FloatOp], x: torch.Tensor, record: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Float64 inference of the lowered ops on normalized N x 1 x H x W input; `record` collects each
    op's output (the tensors the integer runtime stores as int8), in order."""
    for op in ops:
        if isinstance(op, FloatPool):
            x = F.max_pool2d(x, 2)
        elif isinstance(op, FloatHead):
            x = x.mean((2, 3)) @ torch.from_numpy(op.weight).T + torch.from_numpy(op.bias)
        else:
            x = _post(op, F.conv2d(x, torch.from_numpy(op.weight), torch.from_numpy(op.bias),
                                   padding=op.padding, groups=op.groups))
        if record is not None:
            record.append(x)
    return x
