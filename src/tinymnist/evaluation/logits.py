"""Logits of a model over a set of images, on the fastest back end that runs it exactly."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from tinymnist.backends.device import model_device
from tinymnist.data.normalize import to_input
from tinymnist.models.fold import fold_batchnorm, folded_for_inference


@torch.no_grad()
def logits_for(model: nn.Module, images_u8: torch.Tensor, batch_size: int = 256, fold: bool = True,
               native: bool = False) -> torch.Tensor:
    """Logits of `model` in eval mode for uint8 images N x 1 x 28 x 28 (or N x 28 x 28); `model`'s
    own train/eval mode is left as it was.

    fold=True runs an eval-mode copy with every BatchNorm folded into its conv (exact up to float
    rounding), in batches small enough to stay in cache: far faster over a dataset than the unfolded
    model (docs/research.md). Folding costs more than one image's inference, so single-image callers
    pass fold=False.

    native=True (with fold) runs the folded copy on the native engine's forward pass where it can
    (a CPU model whose folded copy has no BatchNorm left and no dropout, e.g. the default one; the
    trainer's per-epoch evaluation under --engine native), else as above.
    """
    if images_u8.dim() == 3:
        images_u8 = images_u8.unsqueeze(1)
    if native and fold:
        infer = native_inference(model)
        if infer is not None:
            return torch.cat([infer(to_input(images_u8[i : i + batch_size]))
                              for i in range(0, len(images_u8), batch_size)])
    runner = folded_for_inference(model) if fold else model
    was_training = model.training
    device = model_device(model)  # the images move to the model batch by batch (a no-op when they are there)
    runner.eval()
    try:
        return torch.cat([runner(to_input(images_u8[i : i + batch_size].to(device)))
                          for i in range(0, len(images_u8), batch_size)])
    finally:
        model.train(was_training)


def native_inference(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The native engine's forward pass over an eval-mode, BatchNorm-folded copy of `model`, or None
    when the engine is not built or cannot run that copy (the caller then runs PyTorch)."""
    if model_device(model).type != "cpu":
        return None
    from tinymnist.backends.native.runner import NativeRunner
    from tinymnist.backends.native.select import native_problem

    folded, _ = fold_batchnorm(model)  # contiguous parameters, as the kernels take them
    if native_problem(folded) is not None:
        return None
    runner = NativeRunner(folded)
    return runner.infer if runner.inference_problem() is None else None
