"""Predictions for 28x28 digits: the label, its probability and the top alternatives."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from tinymnist.evaluation.logits import logits_for


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
