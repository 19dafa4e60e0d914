"""Whitening initialisation of the first convolution (as the CIFAR-10 speed-run trainers do): its
filters start as the principal directions of the training images' patches, each scaled to give unit
variance, in +/- pairs so that a ReLU after it passes both signs of every direction."""

from __future__ import annotations

import torch
from torch import nn

from tinymnist.data.normalize import to_input


def first_conv(model: nn.Module) -> nn.Conv2d | None:
    """The model's first convolution, when it reads the one-channel image densely (groups 1)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module if module.in_channels == 1 and module.groups == 1 else None
    return None


def patch_covariance(images: torch.Tensor, kernel: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
    """Covariance (kh*kw x kh*kw, float64) of every kh x kw patch of N x 1 x H x W uint8 images, after the
    normalization the model sees."""
    x = to_input(images, torch.float64)
    patches = nn.functional.unfold(x, kernel, padding=padding)  # N x k x L
    patches = patches.transpose(1, 2).reshape(-1, patches.shape[1])
    return torch.cov(patches.T)


def whitening_filters(cov: torch.Tensor, count: int, eps: float = 1e-2) -> torch.Tensor:
    """`count` filters (count x k, float64): the leading eigenvectors of `cov` divided by sqrt(eigenvalue
    + eps), each followed by its negation; an odd count ends with one unpaired filter. `eps` (in units of
    the normalized pixels' variance) keeps the flattest directions from being amplified without bound."""
    values, vectors = torch.linalg.eigh(cov)  # ascending
    values, vectors = values.flip(0), vectors.flip(1)
    pairs = (count + 1) // 2
    if pairs > len(values):
        raise ValueError(f"{count} whitening filters need {pairs} patch directions; a {len(values)}-pixel patch has "
                         f"only {len(values)}")
    scaled = (vectors[:, :pairs] / (values[:pairs].clamp(min=0) + eps).sqrt()).T
    return torch.stack([scaled, -scaled], 1).reshape(2 * pairs, -1)[:count]


@torch.no_grad()
def whiten_first_conv(model: nn.Module, images: torch.Tensor, sample: int = 5000) -> None:
    """Set the first conv's weights to whitening filters of the first `sample` images (its bias, if
    any, to zero). ValueError when the model has no such conv or it has more filters than twice its
    patch size."""
    conv = first_conv(model)
    if conv is None:
        raise ValueError("whitening initialisation needs a model whose first layer is a dense conv of the image")
    kh, kw = conv.kernel_size
    padding = conv.padding if isinstance(conv.padding, tuple) else (0, 0)
    cov = patch_covariance(images[:sample].cpu(), (kh, kw), padding)
    filters = whitening_filters(cov, conv.out_channels)
    conv.weight.copy_(filters.reshape(conv.out_channels, 1, kh, kw).to(conv.weight))
    if conv.bias is not None:
        conv.bias.zero_()
