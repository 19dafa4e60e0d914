"""The one normalization every model input goes through: pixels scaled to [0, 1], then standardized
with MNIST's training-set mean and standard deviation."""

from __future__ import annotations

import numpy as np
import torch

# The constants of the reference article (and everyone else); `data.mnist.pixel_stats` recomputes them
# from the training set.
MNIST_MEAN = 0.1307
MNIST_STD = 0.3081


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 images -> float32 normalized with the MNIST mean and std."""
    return ((images.astype(np.float32) / 255.0) - MNIST_MEAN) / MNIST_STD


def to_input(images_u8: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 N x 1 x 28 x 28 -> normalized float (converted per batch: uint8 is 4x less memory)."""
    return (images_u8.to(dtype) / 255.0 - MNIST_MEAN) / MNIST_STD
