"""Predictions for 28x28 digits, and loading the bundled pretrained model."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tinymnist.checkpoint import load_checkpoint, model_from_checkpoint
from tinymnist.device import resolve_device
from tinymnist.evaluation import logits_for

PRETRAINED = "pretrained/separable.pt"


def pretrained_path() -> Path:
    return Path(str(resources.files("tinymnist").joinpath(PRETRAINED)))


def read_checkpoint(checkpoint: str | Path | None = None) -> dict[str, Any]:
    """A checkpoint, or the bundled pretrained model's when none is given."""
    return load_checkpoint(checkpoint or pretrained_path())


def load_model(checkpoint: str | Path | None = None, device: str | torch.device | None = "cpu") -> nn.Module:
    """The model of a checkpoint, or the bundled pretrained model when none is given (eval mode), on
    `device` (auto: CUDA, else MPS, else CPU)."""
    return model_from_checkpoint(read_checkpoint(checkpoint)).to(resolve_device(device))


def load_pretrained() -> nn.Module:
    """The bundled pretrained default model (see README: how it was trained and its accuracy)."""
    return load_model(None)


def predict_digits(model: nn.Module, digits: np.ndarray, top: int = 3) -> list[dict[str, Any]]:
    """digits: N x 28 x 28 uint8 (MNIST style). Returns label, probability, top-k and all probabilities."""
    with torch.no_grad():
        # Unfolded: folding a copy of the model costs more than the few images a call predicts.
        logits = logits_for(model, torch.from_numpy(np.ascontiguousarray(digits)), fold=False)
        probs = torch.softmax(logits, 1).cpu().numpy()
    results = []
    for p in probs:
        order = np.argsort(-p)[:top]
        results.append({"label": int(order[0]), "probability": float(p[order[0]]),
                        "top": [{"label": int(k), "probability": float(p[k])} for k in order],
                        "probabilities": [float(v) for v in p]})
    return results
