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
    norm-fixed weights); the others take torch.optim.SGD's Nesterov step with L2 weight decay."""

    def __init__(self, groups: Iterable[dict[str, Any]], lr: float, momentum: float):
        super().__init__(list(groups), {"lr": lr, "momentum": momentum, "weight_decay": 0.0, "muon": False})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            lr, mu = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if group["muon"]:
                    self._muon(p, p.grad, lr, mu)
                else:
                    self._sgd(p, p.grad, lr, mu, group["weight_decay"])

    def _sgd(self, p: torch.Tensor, grad: torch.Tensor, lr: float, mu: float, weight_decay: float) -> None:
        # torch.optim.SGD(nesterov=True, dampening=0): the buffer starts as the first gradient
        if weight_decay != 0:
            grad = grad.add(p, alpha=weight_decay)
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = grad.clone()
        else:
            state["momentum_buffer"].mul_(mu).add_(grad)
        p.add_(grad.add(state["momentum_buffer"], alpha=mu), alpha=-lr)

    def _muon(self, p: torch.Tensor, grad: torch.Tensor, lr: float, mu: float) -> None:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buffer = state["momentum_buffer"].mul_(mu).add_(grad)
        direction = orthogonalize(grad.add(buffer, alpha=mu))
        rows, cols = p.shape[0], p[0].numel()
        p.mul_(rows ** 0.5 / (p.norm() + 1e-12))
        p.add_(direction, alpha=-lr * max(1.0, rows / cols) ** 0.5)


def muon_groups(model: nn.Module, lr: float, muon_lr: float, weight_decay: float,
                norm_lr_scale: float) -> list[dict[str, Any]]:
    """MuonSGD's groups: the hidden dense conv weights (Muon, `muon_lr`), the other weights (SGD, `lr`,
    L2 weight decay) and BatchNorm parameters and biases (SGD, `lr * norm_lr_scale`, no decay), as
    `make_optimizer` groups them for SGD."""
    muon = hidden_conv_weights(model)
    chosen = {id(p) for p in muon}
    rest = [p for p in model.parameters() if id(p) not in chosen]
    return [{"params": muon, "lr": muon_lr, "muon": True},
            {"params": [p for p in rest if p.dim() > 1], "weight_decay": weight_decay},
            {"params": [p for p in rest if p.dim() <= 1], "lr": lr * norm_lr_scale}]
