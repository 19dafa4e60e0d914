"""The optimizer and the learning-rate schedule of a run, from its configuration."""

from __future__ import annotations

import math

import torch
from torch import nn

from tinymnist.training.config import TrainConfig
from tinymnist.training.muon import MuonSGD, hidden_conv_weights


def lr_factor(step: int, steps_per_epoch: int, cfg: TrainConfig) -> float:
    """Multiplier of the peak LR at optimizer step `step` (0-based)."""
    total = steps_per_epoch * cfg.epochs
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "article":
        # The article's per-epoch curve scaled to the peak: 0.1 at epoch 0, 1 at epoch 2, 0.02 at
        # epoch 5, 0 after the last epoch; constant within an epoch, stretched to cfg.epochs.
        epoch = step // steps_per_epoch
        points = [(0, 0.1), (2 * cfg.epochs / 12, 1.0), (5 * cfg.epochs / 12, 0.02), (cfg.epochs, 0.0)]
        for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
            if epoch <= x1:
                return y0 + (y1 - y0) * (epoch - x0) / (x1 - x0)
        return 0.0
    if cfg.schedule != "onecycle":
        raise ValueError(f"unknown schedule {cfg.schedule!r}")
    warm = max(1, int(cfg.warmup * total))
    if step < warm:
        start = 1.0 / cfg.start_div
        return start + (1.0 - start) * step / warm
    progress = (step - warm) / max(1, total - warm)
    if cfg.anneal == "cos":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0 - progress


def make_optimizer(model: nn.Module, cfg: TrainConfig, fused: bool = False) -> torch.optim.Optimizer:
    """`fused=True` updates every tensor in one fused kernel: next to a native step, the per-tensor
    loop (PyTorch's CPU default, kept for eager runs so that their results do not change) would be a
    visible part of the step."""
    # Muon's weights (optimizer "muon") form a group of their own, last, so that group 0 is the weights
    # at `lr` for every optimizer (the trainer logs its learning rate).
    muon = hidden_conv_weights(model) if cfg.optimizer == "muon" else []
    chosen = {id(p) for p in muon}
    # No weight decay on BatchNorm parameters and biases: decaying them only fights the scale.
    decay = [p for p in model.parameters() if p.dim() > 1 and id(p) not in chosen]
    no_decay = [p for p in model.parameters() if p.dim() <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0, "lr": cfg.lr * cfg.norm_lr_scale}]
    if cfg.optimizer == "muon":
        return MuonSGD([*groups, {"params": muon, "lr": cfg.muon_lr, "muon": True}], lr=cfg.lr, momentum=cfg.momentum)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True, fused=fused or None)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999), fused=fused or None)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999), fused=fused or None)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}")
