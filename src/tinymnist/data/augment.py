"""Augmentation of a whole batch at once: one random affine map per image, optionally with an elastic
distortion, applied with a single `affine_grid` + `grid_sample` call instead of per-image PIL
transforms in worker processes."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def elastic_field(n: int, h: int, w: int, generator: torch.Generator, alpha: float, sigma: float) -> torch.Tensor:
    """Random displacement fields of an elastic distortion (Simard, Steinkraus and Platt, 2003), one per
    image: N x H x W x 2 offsets of each output pixel's (x, y) source coordinate, in affine_grid's
    normalized units. Each is uniform(-1, 1) noise (drawn on the CPU from `generator`, x field then y
    field) smoothed by a normalized Gaussian of `sigma` pixels (taps within 3 sigma and the image's
    size, zeros beyond the image), times `alpha` pixels."""
    noise = torch.rand(n * 2, 1, h, w, generator=generator).mul_(2).sub_(1)
    radius = min(math.ceil(3 * sigma), max(h, w) - 1)
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-taps.square() / (2 * sigma * sigma))
    kernel /= kernel.sum()
    smooth = F.conv2d(noise, kernel.view(1, 1, 1, -1), padding=(0, radius))
    smooth = F.conv2d(smooth, kernel.view(1, 1, -1, 1), padding=(radius, 0)).view(n, 2, h, w)
    # pixels -> normalized units (the grid spans 2 over the image's side)
    units = torch.tensor([2 * alpha / w, 2 * alpha / h]).view(1, 2, 1, 1)
    return (smooth * units).permute(0, 2, 3, 1).contiguous()


def augmentation_draws(n: int, h: int, w: int, generator: torch.Generator,
                       elastic: tuple[float, float] | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One batch's random numbers, in the order both engines take them from `generator` (CPU): N x 4
    uniform draws (rotation, zoom, shift x, shift y), then `elastic_field`'s fields when `elastic` =
    (alpha, sigma) is given (else None)."""
    rand = torch.rand(n, 4, generator=generator)
    return rand, None if elastic is None else elastic_field(n, h, w, generator, *elastic)


def random_affine(images: torch.Tensor, generator: torch.Generator, rotate: float,
                  scale: tuple[float, float], translate: float,
                  elastic: tuple[float, float] | None = None) -> torch.Tensor:
    """Rotate (degrees), zoom and shift (pixels) each image of an N x C x H x W batch at random;
    `elastic` = (alpha, sigma) adds `elastic_field`'s displacements (drawn after the affine maps').

    Works on unnormalized [0, 1] pixels so that the zero padding brought in at the borders is
    background.
    """
    n, _, h, w = images.shape
    # Drawn on the CPU from the run's seeded generator (the same numbers on every device), then moved.
    rand, field = augmentation_draws(n, h, w, generator, elastic)
    rand = rand.to(images.device)
    angle = (rand[:, 0] * 2 - 1) * math.radians(rotate)
    zoom = scale[0] + rand[:, 1] * (scale[1] - scale[0])
    # affine_grid maps output to input coordinates in [-1, 1]: shift by 2 * px / size.
    shift_x = (rand[:, 2] * 2 - 1) * translate * 2 / w
    shift_y = (rand[:, 3] * 2 - 1) * translate * 2 / h
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    if field is not None:
        grid = grid + field.to(images.device)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
