"""Muon for the hidden dense convs, Nesterov SGD for every other parameter, in one optimizer.

Muon (Jordan et al., 2024; airbench's CIFAR-10 speed runs use it on their conv filters) replaces a
weight matrix's momentum update by the nearest semi-orthogonal matrix (five Newton-Schulz iterations):
every direction of the update moves by the same amount, however unevenly the gradient spreads over them.
It applies to the dense convs between the first conv and the head (in a separable block, its pointwise
1x1 conv), each viewed as an out x (in * k * k) matrix. The first conv (a handful of 3x3 filters on the
image), the depthwise filters (one 3x3 filter per channel, not a map between channels), the head,
BatchNorm parameters and biases take the SGD step that `optimizer="sgd"` would take.

Each Muon weight is followed by a BatchNorm, so its scale does not change what the network computes;
as airbench does, the weight is rescaled to a fixed norm (sqrt of its output channels: rows of about
unit length) before each update, so that the learning rate sets an angle per step instead of shrinking
as the weight grows. No weight decay on these weights: with the norm fixed there is nothing to decay.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim.sgd import sgd

# The quintic Newton-Schulz coefficients of Muon's reference implementation: they push every singular
# value into roughly [0.7, 1.2] in five steps (not exactly to 1, which is what makes them fast).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5


def hidden_conv_weights(model: nn.Module) -> list[torch.Tensor]:
    """The weights Muon updates: dense convs (groups 1) other than the model's first and last conv."""
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    return [m.weight for m in convs[1:-1] if m.groups == 1]


def orthogonalize(update: torch.Tensor, steps: int = NS_STEPS) -> torch.Tensor:
    """The update (out x anything, viewed as out x rest) mapped to an approximately semi-orthogonal
    matrix of the same shape by `steps` Newton-Schulz iterations."""
    a, b, c = NS_COEFFICIENTS
    x = update.reshape(update.shape[0], -1)
    transposed = x.shape[0] > x.shape[1]
    if transposed:
        x = x.t()
    x = x / (x.norm() + 1e-7)
    for _ in range(steps):
        gram = x @ x.t()
        x = a * x + (b * gram + c * gram @ gram) @ x
    if transposed:
        x = x.t()
    return x.reshape(update.shape)


class MuonSGD(torch.optim.Optimizer):
    """Param groups with "muon": True take Muon steps (momentum, Nesterov, orthogonalized, on
    norm-fixed weights); the others take torch.optim.SGD's Nesterov step (its own functional `sgd`)
    with L2 weight decay."""

    def __init__(self, groups: Iterable[dict[str, Any]], lr: float, momentum: float):
        super().__init__(list(groups), {"lr": lr, "momentum": momentum, "weight_decay": 0.0, "muon": False})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            lr, mu = group["lr"], group["momentum"]
            params = [p for p in group["params"] if p.grad is not None]
            if group["muon"]:
                for p in params:
                    self._muon(p, p.grad, lr, mu)
                continue
            buffers = [self.state[p].get("momentum_buffer") for p in params]
            sgd(params, [p.grad for p in params], buffers, weight_decay=group["weight_decay"], momentum=mu, lr=lr,
                dampening=0.0, nesterov=True, maximize=False)
            for p, buffer in zip(params, buffers, strict=True):  # sgd creates a missing buffer in the list
                self.state[p]["momentum_buffer"] = buffer

    def _muon(self, p: torch.Tensor, grad: torch.Tensor, lr: float, mu: float) -> None:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buffer = state["momentum_buffer"].mul_(mu).add_(grad)
        direction = orthogonalize(grad.add(buffer, alpha=mu))
        rows, cols = p.shape[0], p[0].numel()
        p.mul_(rows ** 0.5 / (p.norm() + 1e-12))
        p.add_(direction, alpha=-lr * max(1.0, rows / cols) ** 0.5)
