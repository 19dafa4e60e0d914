"""The model zoo: the article's reference network and our own designs, behind a name registry.

Contract for every model: input N x 1 x 28 x 28 float (normalized), output N x 10 logits. The loss
(cross-entropy) lives in training, not here. This module imports nothing from training or the CLI;
a checkpoint stores a model's registry name and keyword arguments, so `create_model` rebuilds it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from tinymnist.models.quant import QuantLinear


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable[..., nn.Module]
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)  # the factory's keyword arguments
    # How this model trains best: TrainConfig field names and values that replace TrainConfig's defaults
    # for it (flags and keyword arguments the user gives override them in turn). Plain data here, so the
    # models stage stays free of training; training/config.py checks the names and values.
    recipe: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelEntry] = {}

# The model `tinymnist train` uses when none is named (chosen by the research in docs/research.md).
DEFAULT_MODEL = "separable"


Factory = Callable[..., nn.Module]


def register(name: str, description: str, recipe: Mapping[str, Any] | None = None,
             **defaults: Any) -> Callable[[Factory], Factory]:
    """Register a model factory under `name`; `defaults` are its keyword arguments, `recipe` its own
    training settings (TrainConfig field -> value, e.g. {"lr": 0.2, "rotate": 3.0})."""
    def wrap(factory: Factory) -> Factory:
        _REGISTRY[name] = ModelEntry(name, factory, description, defaults, dict(recipe or {}))
        return factory

    return wrap


def model_names() -> list[str]:
    return list(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def model_recipe(name: str) -> dict[str, Any]:
    """The model's own training settings ({} when it trains with TrainConfig's defaults)."""
    return dict(model_entry(name).recipe)


def model_kwargs(name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full keyword arguments a model is built with: registry defaults plus overrides."""
    return {**model_entry(name).defaults, **(overrides or {})}


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model; a bad argument raises ValueError (a bug inside a model still raises)."""
    entry = model_entry(name)
    try:
        return entry.factory(**model_kwargs(name, overrides))
    except TypeError as exc:  # an argument the model does not take
        raise ValueError(f"bad arguments for model {name!r}: {exc}") from exc


def preferred_memory_format(model: nn.Module) -> torch.memory_format:
    """channels_last (NHWC) for models with depthwise convs, where PyTorch's CPU kernels train and
    evaluate them faster; NCHW otherwise, where channels_last is slower (docs/research.md). Every
    model's input has one channel, so its layout is the same in both formats."""
    depthwise = any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in model.modules())
    return torch.channels_last if depthwise else torch.contiguous_format


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


# ---------------------------------------------------------------------------------------------
# The article's network, exactly: conv (with bias) -> ReLU -> BatchNorm, dropout 0.01 after each
# max-pool and before the head, a 1x1 conv to 10 channels, global average pooling. 4,838 parameters.


class ReferenceNet(nn.Module):
    def __init__(self, widths: tuple[int, int, int] = (4, 8, 16), dropout: float = 0.01, num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 1
        for block, width in enumerate(widths):
            for _ in range(2):
                layers += [nn.Conv2d(in_ch, width, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(width)]
                in_ch = width
            if block < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            layers.append(nn.Dropout(dropout))
        layers += [nn.Conv2d(in_ch, num_classes, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.net = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # the article initialises with Xavier-uniform
                nn.init.xavier_uniform_(module.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# ---------------------------------------------------------------------------------------------
# Our designs, described by a plan string so that channel plans can be searched without new code.
# Tokens: "c16" 3x3 conv (padding 1) to 16 channels; "v16" 3x3 conv without padding; "t8" 1x1
# transition conv; "s16" depthwise-separable conv (3x3 per channel, then 1x1 to 16 channels: ~9x
# fewer parameters than "c16" at equal width); "d8" 3x3 conv with stride 2 (padding 1) to 8 channels,
# which halves the map as a conv then "M" would at a quarter of the conv's work; "r" the conv block
# before it once more with the same weights (its own BatchNorm: the block must keep its width); "M"
# 2x2 max-pool. Every conv is bias-free and followed by BatchNorm then ReLU
# (a bias before BatchNorm is cancelled by its mean subtraction). The head (head="gap") is a 1x1 conv
# to the classes followed by global average pooling; head="fc" is one linear layer on the flattened
# last map instead (a 28x28 input assumed: it keeps where on the digit a feature is, at the cost of
# height x width times the parameters); head="fc4" is that linear layer with its weights trained for 4
# bits (models/quant.py), which the int8 C export stores in half the bytes.


def parse_plan(plan: str) -> list[tuple[str, int]]:
    layers = []
    for token in plan.split():
        if token in ("M", "r"):
            layers.append((token, 0))
        elif token[0] in "cvtsd" and token[1:].isdigit() and int(token[1:]) > 0:
            layers.append((token[0], int(token[1:])))
        else:
            raise ValueError(f"bad token {token!r} in model plan {plan!r}")
    return layers


class Residual(nn.Module):
    """act(body(x) + x): an identity shortcut around a conv-BN body of equal input and output
    width (no parameters of its own)."""

    def __init__(self, body: nn.Sequential, act: nn.Module):
        super().__init__()
        self.body = body
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + x)


def _conv(reused: Iterator[nn.Conv2d] | None, made: list[nn.Conv2d], *args: Any, **kwargs: Any) -> nn.Conv2d:
    """The next conv of the block being repeated, or a new nn.Conv2d(*args, **kwargs); noted in `made`."""
    module = next(reused) if reused is not None else nn.Conv2d(*args, **kwargs)
    made.append(module)
    return module


class PlanNet(nn.Module):
    def __init__(self, plan: str, dropout: float = 0.0, num_classes: int = 10, dw_bn: bool = True,
                 dw_affine: bool = True, dw_act: bool = False, residual: bool = False, act: str = "relu",
                 head: str = "gap"):
        super().__init__()
        activations = {"relu": nn.ReLU, "silu": nn.SiLU}
        if act not in activations:
            raise ValueError(f"unknown activation {act!r}; choose one of: {', '.join(activations)}")
        if head not in ("gap", "fc", "fc4"):
            raise ValueError(f"unknown head {head!r}; choose gap (1x1 conv + global average pool), fc (linear) or fc4 "
                             "(linear, weights trained for 4 bits)")
        activation = activations[act]
        layers: list[nn.Module] = []
        in_ch = 1
        side = 28  # the map's height and width, for head="fc"
        convs: list[nn.Conv2d] = []  # the last conv block's convs, which an "r" uses again
        last: tuple[str, int] | None = None  # its kind and input width
        for kind, width in parse_plan(plan):
            if kind == "M":
                side //= 2
                layers.append(nn.MaxPool2d(2))
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
                continue
            reuse = kind == "r"
            if reuse:
                if last is None or last[1] != in_ch:
                    raise ValueError(f"model plan {plan!r}: 'r' repeats a conv block that keeps its width "
                                     "(the same number of channels in and out)")
                kind, width = last[0], in_ch
            else:
                last = (kind, in_ch)
            reused, convs = (iter(convs) if reuse else None), []
            block: list[nn.Module] = []
            shortcut = residual and kind in "cs" and width == in_ch
            if kind == "s":
                block.append(_conv(reused, convs, in_ch, in_ch, 3, padding=1, groups=in_ch, bias=False))
                if dw_bn:  # BatchNorm between the depthwise and pointwise parts (MobileNet) or not (Xception)
                    # Its affine scale and shift are redundant: the pointwise conv absorbs the scale
                    # and the BatchNorm after it removes the shift. dw_affine=False drops them.
                    block.append(nn.BatchNorm2d(in_ch, affine=dw_affine))
                if dw_act:  # an activation between the two halves (MobileNet): twice the nonlinear depth
                    block.append(activation())
                kind = "t"
            kernel, padding, stride = {"c": (3, 1, 1), "v": (3, 0, 1), "t": (1, 0, 1), "d": (3, 1, 2)}[kind]
            side = (side + 2 * padding - kernel) // stride + 1
            block += [_conv(reused, convs, in_ch, width, kernel, padding=padding, stride=stride, bias=False),
                      nn.BatchNorm2d(width)]
            if shortcut:  # residual=True: a shortcut wherever a 3x3 conv keeps the width
                layers.append(Residual(nn.Sequential(*block), activation()))
            else:
                layers += [*block, activation()]
            in_ch = width
        if head in ("fc", "fc4"):
            if side < 1:
                raise ValueError(f"model plan {plan!r} leaves no pixels of a 28x28 image for the fc head")
            features = in_ch * side * side
            linear = nn.Linear(features, num_classes) if head == "fc" else QuantLinear(features, num_classes, 4)
            layers += [nn.Flatten(), linear]
        else:
            layers += [nn.Conv2d(in_ch, num_classes, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@register("reference", "the article's stepped 4,838-parameter net (conv-ReLU-BN, dropout 0.01, 1x1 + GAP)")
def reference(**kwargs: Any) -> nn.Module:
    return ReferenceNet(**kwargs)


@register("stepped", "ours, stepped: blocks of equal width, bias-free conv-BN-ReLU, 1x1 + GAP head",
          plan="c8 c8 M c12 c12 M c16", dropout=0.0)
def stepped(**kwargs: Any) -> nn.Module:
    return PlanNet(**kwargs)


@register("smooth", "ours, smooth: width grows at every conv, bias-free conv-BN-ReLU, 1x1 + GAP head",
          plan="c6 c8 M c10 c12 M c14", dropout=0.0)
def smooth(**kwargs: Any) -> nn.Module:
    return PlanNet(**kwargs)


# Its recipe (batch 32, peak LR 0.3) from docs/research.md's rounds ST and MU; until then it trained
# with TrainConfig's defaults, as `teacher` (its network) still does apart from smoothing.
@register("separable", "ours, default: 8 depthwise-separable convs (16-32 channels), BN-ReLU, 1x1 + GAP head",
          recipe={"batch_size": 32, "lr": 0.3},
          plan="c8 s16 s16 M s20 s20 s20 M s32 s28", dw_bn=False, dropout=0.0)
def separable(**kwargs: Any) -> nn.Module:
    return PlanNet(**kwargs)



# The frontier below the default (issue 29): each chosen on validation by docs/research.md's rounds F1
# and F2 among candidates of its budget, its recipe included; measured on the test set afterwards.
@register("tiny4k", "under 4,000 parameters: the default's depth, narrower (12-24 channels)",
          recipe={"batch_size": 32, "optimizer": "muon", "muon_lr": 0.01}, plan="c8 s12 s16 M s20 s20 s20 M s24 s16",
          dw_bn=False, dropout=0.0)
def tiny4k(**kwargs: Any) -> nn.Module:
    return PlanNet(**kwargs)


# tiny2k's "r" (the 14x14 stage's last block once more, its own BatchNorm) from round RP.
@register("tiny2k", "under 2,000 parameters: wide early (8-12 channels at 28x28), 16 channels after, one block used twice",
          recipe={"lr": 0.3, "batch_size": 32}, plan="c8 s12 s12 M s16 s16 r M s16", dw_bn=False, dropout=0.0)
def tiny2k(**kwargs: Any) -> nn.Module:
    return PlanNet(**kwargs)


# tiny1k's batch 16 from round F10 (batch 32 from F8, smoothing 0 from F7, Muon from MU).
@register("tiny1k", "under 1,000 parameters: six convs, 4-12 channels",
          recipe={"batch_size": 16, "label_smoothing": 0.0, "optimizer": "muon", "muon_lr": 0.01},
          plan="c4 s6 s8 M s10 s10 M s12", dw_bn=False,
          dropout=0.0)
def tiny1k(**kwargs: Any) -> nn.Module:
    return PlanNet(**kwargs)


# The microcontroller frontier (issue 30): plans chosen for a Cortex-M4 instruction budget by
# docs/research.md's rounds MC1-MC7 (costs measured under QEMU, choices on validation). Neither runs
# more than one conv's worth at 28x28: every further conv at full resolution costs more instructions
# than a whole stage at 7x7. Widths are multiples of 4, which the int8 runtime's SIMD kernels take.
@register("mcu-fast", "for a Cortex-M4 in <= 1 M instructions: one conv at 28x28, then 6 separable convs (16-28 channels)",
          plan="c12 M s16 s20 s20 M s28 s28 s28", dw_bn=False, dropout=0.0)
def mcu_fast(**kwargs: Any) -> nn.Module:
    return PlanNet(**kwargs)


# Rounds MC7-MC8: a stride-2 first conv (8 filters at a quarter of the positions), 12 channels at
# 14x14, and a linear head on the last 3x3 map, which keeps where on the digit each feature is.
@register("mcu-tiny", "for a Cortex-M4 in ~250 k instructions: a stride-2 conv of the image, two pools, 8-24 channels, "
          "a linear head on the 3x3 map; distilled from `teacher`",
          recipe={"batch_size": 32, "label_smoothing": 0.0, "teacher": "teacher", "distill_weight": 0.5,
                  "distill_temperature": 2.0},
          plan="d8 s12 M s16 s16 M s24 s12", head="fc", dw_bn=False, dropout=0.0)
def mcu_tiny(**kwargs: Any) -> nn.Module:
    return PlanNet(**kwargs)


# A distillation teacher (docs/research.md, rounds KD1-KD2): the default's network trained on hard
# labels. Label smoothing makes a model's predictions soft before any temperature, and distilling
# those smoothed the small students' targets further, which costs them accuracy.
@register("teacher", "the default's network trained without label smoothing: mcu-tiny's distillation teacher",
          recipe={"label_smoothing": 0.0}, **model_kwargs("separable"))
def teacher(**kwargs: Any) -> nn.Module:
    return PlanNet(**kwargs)
