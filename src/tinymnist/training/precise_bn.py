"""Precise BatchNorm: replace each BatchNorm's running statistics (an exponential average over the
last few dozen training batches, taken while the weights were still moving) by their average over
many batches of un-augmented training images under the final weights. Training is unaffected
(in training mode BatchNorm uses the batch's own statistics); only evaluation changes."""

from __future__ import annotations

import torch
from torch import nn

from tinymnist.data.normalize import to_input
from tinymnist.models.zoo import preferred_memory_format


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> int:
    """Recompute the running mean and variance of every BatchNorm in `model` over `images`
    (uint8 N x 1 x 28 x 28), as equal-weight averages over batches. Other layers run in eval mode
    (no dropout). Returns the number of BatchNorm layers recalibrated; restores the model's mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or len(images) == 0:
        return 0
    was_training = model.training
    momenta = [bn.momentum for bn in norms]
    model.eval()
    layout = preferred_memory_format(model)
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: every batch weighs the same
        bn.train()
    for start in range(0, len(images), batch_size):
        model(to_input(images[start : start + batch_size]).contiguous(memory_format=layout))
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum
    model.train(was_training)
    return len(norms)
