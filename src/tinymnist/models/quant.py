"""Weights trained for fewer bits (quantization-aware training): a layer whose forward uses its
weights rounded to a b-bit grid, one scale per output row (max |w| -> 2^(b-1) - 1), and passes the
gradient straight through the rounding to the float weights it keeps (the straight-through
estimator). The int8 C export stores such a layer's weights in b bits with the same grid, so the
integer model computes with exactly the values the float model was trained and evaluated with."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn


def quantized(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """`weight` (out x ...) rounded to the symmetric b-bit grid of each output row; rows of zeros stay zero."""
    top = 2 ** (bits - 1) - 1
    flat = weight.reshape(len(weight), -1)
    scale = flat.abs().amax(1, keepdim=True) / top
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return (torch.clamp(torch.round(flat / scale), -top, top) * scale).reshape(weight.shape)


def fake_quantized(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """`quantized` in the forward pass, the identity in the backward (straight-through)."""
    return weight + (quantized(weight.detach(), bits) - weight).detach()


class QuantLinear(nn.Linear):
    """nn.Linear whose forward uses its weights on the `weight_bits`-bit grid (see the module's text)."""

    def __init__(self, in_features: int, out_features: int, weight_bits: int = 4, bias: bool = True):
        if not 2 <= weight_bits <= 8:
            raise ValueError(f"weight_bits must lie in 2..8, not {weight_bits}")
        super().__init__(in_features, out_features, bias=bias)
        self.weight_bits = weight_bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, fake_quantized(self.weight, self.weight_bits), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, weight_bits={self.weight_bits}"


def weight_bits(module: nn.Module) -> int:
    """The bits a layer's weights are trained for: 8 (the int8 export's) unless it says fewer."""
    return int(getattr(module, "weight_bits", 8))


def quant_layers(model: nn.Module) -> list[QuantLinear]:
    return [m for m in model.modules() if isinstance(m, QuantLinear)]


@contextlib.contextmanager
def rounded_in_place(layers: list[QuantLinear]) -> Iterator[None]:
    """Within the block, each layer's weight tensor holds its rounded values; after it, the float
    weights again. For engines that read the weight tensors themselves (the native engine): a step
    made inside computes the input gradients with the rounded weights and leaves the weight gradients
    for the float ones (straight-through). In place, so pointers to the tensors stay valid."""
    kept = [m.weight.detach().clone() for m in layers]
    with torch.no_grad():
        for m in layers:
            m.weight.copy_(quantized(m.weight, m.weight_bits))
    try:
        yield
    finally:
        with torch.no_grad():
            for m, w in zip(layers, kept, strict=True):
                m.weight.copy_(w)
