"""Augmentation of a whole batch at once: one random affine map per image, applied with a single
`affine_grid` + `grid_sample` call instead of per-image PIL transforms in worker processes."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(images: torch.Tensor, generator: torch.Generator, rotate: float,
                  scale: tuple[float, float], translate: float) -> torch.Tensor:
    """Rotate (degrees), zoom and shift (pixels) each image of an N x C x H x W batch at random.

    Works on unnormalized [0, 1] pixels so that the zero padding brought in at the borders is
    background.
    """
    n, _, h, w = images.shape
    # Drawn on the CPU from the run's seeded generator (the same numbers on every device), then moved.
    rand = torch.rand(n, 4, generator=generator).to(images.device)
    angle = (rand[:, 0] * 2 - 1) * math.radians(rotate)
    zoom = scale[0] + rand[:, 1] * (scale[1] - scale[0])
    # affine_grid maps output to input coordinates in [-1, 1]: shift by 2 * px / size.
    shift_x = (rand[:, 2] * 2 - 1) * translate * 2 / w
    shift_y = (rand[:, 3] * 2 - 1) * translate * 2 / h
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift_x], 1), torch.stack([sin, cos, shift_y], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
