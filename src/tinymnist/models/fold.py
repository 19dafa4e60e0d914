"""BatchNorm folding, in one place: the arithmetic that merges an eval-mode BatchNorm into a
neighbouring conv (used here and by the int8 C export), and the folded copy of a model that
evaluation and the ONNX/TorchScript export run (fewer layers: the same logits, faster).

The copy is mapped from the model's layer description (models/layers.py): a conv followed by its
BatchNorm becomes one conv; a BatchNorm followed (through any dropout, the identity in eval mode) by
an unpadded dense conv folds into that conv; every other layer is kept as it is.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from tinymnist.models import layers as L
from tinymnist.models.quant import QuantLinear, quantized
from tinymnist.models.zoo import Residual, preferred_memory_format


def batchnorm_affine(bn: nn.BatchNorm2d, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as y = x * scale + shift, computed in `dtype` (default: the BatchNorm's own).
    A BatchNorm without affine parameters has weight 1 and bias 0."""
    assert bn.running_mean is not None and bn.running_var is not None
    dtype = dtype or bn.running_var.dtype
    scale = torch.rsqrt(bn.running_var.to(dtype) + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight.to(dtype)
    shift = -bn.running_mean.to(dtype) * scale
    if bn.bias is not None:
        shift = shift + bn.bias.to(dtype)
    return scale, shift


def fold_after(weight: torch.Tensor, bias: torch.Tensor | None, scale: torch.Tensor,
               shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """conv -> BatchNorm as one conv's (weight, bias): always exact in eval mode, depthwise convs included,
    since the BatchNorm scales each output channel."""
    bias = bias if bias is not None else torch.zeros_like(scale)
    return weight * scale.view(-1, 1, 1, 1), bias * scale + shift


def fold_before(weight: torch.Tensor, bias: torch.Tensor | None, scale: torch.Tensor,
                shift: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """BatchNorm -> dense conv without padding as one conv's (weight, bias) (with padding, the zeros
    would not be normalized)."""
    bias = bias if bias is not None else torch.zeros(weight.shape[0])
    return weight * scale.view(1, -1, 1, 1), bias + (weight * shift.view(1, -1, 1, 1)).sum((1, 2, 3))


def _conv_with(conv: nn.Conv2d, weight_bias: tuple[torch.Tensor, torch.Tensor]) -> nn.Conv2d:
    fused = copy.deepcopy(conv)
    fused.weight, fused.bias = (nn.Parameter(t) for t in weight_bias)
    return fused


def _folded_sequence(layers: list[L.Layer]) -> tuple[list[nn.Module], int]:
    out: list[nn.Module] = []
    folded = 0
    i = 0
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, L.Conv) and isinstance(nxt, L.BatchNorm):
            conv = layer.module
            out.append(_conv_with(conv, fold_after(conv.weight, conv.bias, *batchnorm_affine(nxt.module))))
            folded, i = folded + 1, i + 2
            continue
        if isinstance(layer, L.BatchNorm):
            j = i + 1
            while j < len(layers) and isinstance(layers[j], L.Dropout):
                j += 1
            after = layers[j] if j < len(layers) else None
            if isinstance(after, L.Conv) and after.padding == 0 and after.groups == 1:
                conv = after.module
                out.append(_conv_with(conv, fold_before(conv.weight, conv.bias, *batchnorm_affine(layer.module))))
                folded, i = folded + 1, j + 1
                continue
        if isinstance(layer, L.Shortcut):
            body, count = _folded_sequence(layer.body)
            out.append(Residual(nn.Sequential(*body), copy.deepcopy(layer.act.module)))
            folded += count
        elif isinstance(layer, L.GlobalAvgPool):
            out += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        elif isinstance(layer, L.Linear):
            out += [nn.Flatten(), _plain_linear(layer.module)]
        else:
            out.append(copy.deepcopy(layer.module))
        i += 1
    return out, folded


def _plain_linear(fc: nn.Linear) -> nn.Linear:
    """A plain nn.Linear computing what `fc` computes: a layer trained for fewer bits gets its rounded
    weights (every engine can then run the copy as an ordinary linear layer)."""
    if not isinstance(fc, QuantLinear):
        return copy.deepcopy(fc)
    # skip_init: no initialisation, so that folding draws nothing from the global generator
    plain = nn.utils.skip_init(nn.Linear, fc.in_features, fc.out_features, bias=fc.bias is not None,
                               device=fc.weight.device, dtype=fc.weight.dtype)
    plain.weight.copy_(quantized(fc.weight, fc.weight_bits))
    if fc.bias is not None:
        plain.bias.copy_(fc.bias)
    return plain


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """An eval-mode copy of `model` (an nn.Sequential) with BatchNorm layers folded into neighbouring
    convs where that is exact; returns (copy, number of BatchNorm layers folded)."""
    with torch.no_grad():
        modules, folded = _folded_sequence(L.describe(model))
    return nn.Sequential(*modules).eval(), folded


def folded_for_inference(model: nn.Module) -> nn.Module:
    """`fold_batchnorm`'s eval-mode copy in the memory layout the model runs fastest in."""
    folded, _ = fold_batchnorm(model)
    return folded.to(memory_format=preferred_memory_format(folded))
