"""Lookahead (Zhang et al., 2019): every k optimizer steps the slow weights move a fraction alpha of
the way toward the fast ones, and the fast weights restart from there. It wraps whichever optimizer
the run uses, from outside: the update writes the parameters in place, so the native engine, which
holds pointers to them, sees the reset without being told."""

from __future__ import annotations

import torch
from torch import nn


def slow_weights(model: nn.Module) -> list[torch.Tensor]:
    """The slow copy Lookahead starts from: the parameters as they are now."""
    return [p.detach().clone() for p in model.parameters()]


@torch.no_grad()
def lookahead_sync(model: nn.Module, slow: list[torch.Tensor], alpha: float) -> None:
    """slow += alpha * (fast - slow), then fast = slow. BatchNorm's running statistics are left as the
    fast weights made them (they are estimates, not parameters)."""
    for s, p in zip(slow, model.parameters(), strict=True):
        s.lerp_(p, alpha)
        p.copy_(s)


def is_sync_step(step: int, every: int) -> bool:
    """Whether the optimizer step numbered `step` (1 for the first of the run) ends a Lookahead cycle.
    Counted over the whole run, not per epoch, so that a resumed run syncs where an uninterrupted one does."""
    return every > 0 and step % every == 0
