"""One description of a network's layers, which every back end maps from.

`describe(model)` flattens a registered model into a list of layer ops, each holding its PyTorch
module (the parameters) and the activation shapes around it (per image: height, width, channels).
The native engine (backends/native/program.py), the BatchNorm-folded copy used for evaluation and
ONNX/TorchScript (models/fold.py) and the int8 C export (export/c/lower.py) each walk this list and
merge or refuse ops by their own rules; none of them walks a model's modules itself.

Adding a layer type: describe it here (an op class and one branch in `_describe_module`), then map it
in each back end that should run it; a back end that meets an op it has no kernel for raises its own
Unsupported, naming the op.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from tinymnist.models.quant import weight_bits
from tinymnist.models.zoo import PlanNet, ReferenceNet, Residual


class Unsupported(ValueError):
    """A layer, or an order of layers, that a back end (or this description) cannot handle."""


@dataclass(frozen=True)
class Shape:
    """One image's activation: h x w pixels, c channels."""

    h: int
    w: int
    c: int


@dataclass(frozen=True)
class Conv:
    """nn.Conv2d with square kernels and equal padding on every side (dense when groups == 1)."""

    module: nn.Conv2d
    inp: Shape
    out: Shape

    @property
    def kernel(self) -> int:
        return self.module.kernel_size[0]

    @property
    def padding(self) -> int:
        padding = self.module.padding  # a tuple once `describe` has accepted the conv
        assert isinstance(padding, tuple)
        return int(padding[0])

    @property
    def stride(self) -> int:
        return self.module.stride[0]

    @property
    def groups(self) -> int:
        return self.module.groups

    @property
    def depthwise(self) -> bool:
        return self.groups > 1 and self.groups == self.inp.c == self.out.c


@dataclass(frozen=True)
class BatchNorm:
    module: nn.BatchNorm2d
    shape: Shape


@dataclass(frozen=True)
class Activation:
    """An elementwise activation: kind "relu" or "silu"."""

    module: nn.Module
    kind: str
    shape: Shape


@dataclass(frozen=True)
class MaxPool:
    module: nn.MaxPool2d
    inp: Shape
    out: Shape


@dataclass(frozen=True)
class Dropout:
    module: nn.Dropout
    shape: Shape


@dataclass(frozen=True)
class GlobalAvgPool:
    """AdaptiveAvgPool2d(1) then Flatten: N x C x H x W -> N x C."""

    inp: Shape


@dataclass(frozen=True)
class Linear:
    """Flatten then nn.Linear: N x C x H x W -> N x (C*H*W) in PyTorch's channel-major order -> N x out."""

    module: nn.Linear
    inp: Shape
    bits: int = 8  # the bits its weights were trained for (models/quant.py): 8 for a plain nn.Linear


@dataclass(frozen=True)
class Shortcut:
    """act(body(x) + x): an identity shortcut around `body`, which keeps the shape."""

    module: Residual
    body: list[Layer]
    act: Activation


Layer = Conv | BatchNorm | Activation | MaxPool | Dropout | GlobalAvgPool | Linear | Shortcut

ACTIVATIONS = {nn.ReLU: "relu", nn.SiLU: "silu"}


def modules_in_order(model: nn.Module) -> list[nn.Module]:
    """The top-level sequence of a model whose forward is exactly `self.net(x)` (or of a Sequential),
    nested Sequentials flattened."""
    if isinstance(model, nn.Sequential):
        body = model
    elif isinstance(model, (ReferenceNet, PlanNet)):  # forward(x) = self.net(x)
        body = model.net
    else:
        raise Unsupported(f"{type(model).__name__} is not a registered sequence of layers")
    layers: list[nn.Module] = []
    for m in body:
        layers += modules_in_order(m) if isinstance(m, nn.Sequential) else [m]
    return layers


def describe(model: nn.Module, height: int = 28, width: int = 28, channels: int = 1) -> list[Layer]:
    """`model`'s layers for one input image of channels x height x width."""
    layers, shape = _describe_sequence(modules_in_order(model), Shape(height, width, channels))
    return layers


def _describe_sequence(modules: list[nn.Module], shape: Shape) -> tuple[list[Layer], Shape]:
    layers: list[Layer] = []
    i = 0
    while i < len(modules):
        m = modules[i]
        if isinstance(m, nn.AdaptiveAvgPool2d) and i + 1 < len(modules) and isinstance(modules[i + 1], nn.Flatten):
            if m.output_size not in (1, (1, 1)):
                raise Unsupported(f"{m}: only global average pooling (output size 1)")
            layers.append(GlobalAvgPool(shape))
            shape = Shape(1, 1, shape.c)
            i += 2
            continue
        if isinstance(m, nn.Flatten) and i + 1 < len(modules) and isinstance(modules[i + 1], nn.Linear):
            linear = modules[i + 1]
            assert isinstance(linear, nn.Linear)
            if linear.in_features != shape.h * shape.w * shape.c:
                raise Unsupported(f"{linear} expects {linear.in_features} inputs, gets {shape.h * shape.w * shape.c}")
            layers.append(Linear(linear, shape, weight_bits(linear)))
            shape = Shape(1, 1, linear.out_features)
            i += 2
            continue
        layer = _describe_module(m, shape)
        if layer is not None:
            layers.append(layer)
            shape = _output_shape(layer)
        i += 1
    return layers, shape


def _describe_module(m: nn.Module, shape: Shape) -> Layer | None:
    if isinstance(m, nn.Conv2d):
        k, pad, stride, dilation = m.kernel_size, m.padding, m.stride, m.dilation
        if k[0] != k[1] or not isinstance(pad, tuple) or pad[0] != pad[1] or stride[0] != stride[1] or dilation != (1, 1) \
                or m.padding_mode != "zeros":
            raise Unsupported(f"conv {m}: only square kernels, equal zero padding and strides, no dilation")
        if m.in_channels != shape.c:
            raise Unsupported(f"conv {m} expects {m.in_channels} channels, gets {shape.c}")
        size = [(n + 2 * pad[0] - k[0]) // stride[0] + 1 for n in (shape.h, shape.w)]
        return Conv(m, shape, Shape(size[0], size[1], m.out_channels))
    if isinstance(m, nn.BatchNorm2d):
        if m.num_features != shape.c:
            raise Unsupported(f"{m}: needs {m.num_features} channels, gets {shape.c}")
        return BatchNorm(m, shape)
    if type(m) in ACTIVATIONS:
        return Activation(m, ACTIVATIONS[type(m)], shape)
    if isinstance(m, nn.MaxPool2d):
        return MaxPool(m, shape, Shape(shape.h // 2, shape.w // 2, shape.c)) if _plain_2x2(m) else _refuse(m)
    if isinstance(m, nn.Dropout):
        return Dropout(m, shape)
    if isinstance(m, nn.Identity):
        return None
    if isinstance(m, Residual):
        body, out = _describe_sequence(modules_in_order(m.body), shape)
        act = _describe_module(m.act, out)
        if out != shape or not isinstance(act, Activation):
            raise Unsupported(f"{m}: a shortcut needs a body that keeps the shape and an activation after it")
        return Shortcut(m, body, act)
    return _refuse(m)


def _plain_2x2(m: nn.MaxPool2d) -> bool:
    return (m.kernel_size in (2, (2, 2)) and m.stride in (2, (2, 2)) and m.padding in (0, (0, 0))
            and m.dilation in (1, (1, 1)) and not m.ceil_mode)


def _refuse(m: nn.Module) -> Layer:
    raise Unsupported(f"layer {type(m).__name__} ({m}) is not described (supported: conv, BatchNorm, ReLU, SiLU, "
                      "2x2 max-pool, dropout, global average pooling, flatten + linear, identity shortcuts)")


def _output_shape(layer: Layer) -> Shape:
    if isinstance(layer, (Conv, MaxPool)):
        return layer.out
    if isinstance(layer, (BatchNorm, Activation, Dropout)):
        return layer.shape
    if isinstance(layer, Shortcut):
        return layer.act.shape
    if isinstance(layer, Linear):
        return Shape(1, 1, layer.module.out_features)
    return Shape(1, 1, layer.inp.c)
