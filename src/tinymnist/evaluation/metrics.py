"""Scores from logits: loss, accuracy, per-class precision and recall, the confusion matrix."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


def loss_and_correct(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, int]:
    loss = F.cross_entropy(logits, labels).item()
    correct = int((logits.argmax(1) == labels).sum())
    return loss, correct


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(labels * num_classes + predictions, minlength=num_classes**2).reshape(num_classes, num_classes)


def metrics_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
    logits, labels = logits.cpu(), labels.cpu()
    loss, correct = loss_and_correct(logits, labels)
    y, p = labels.numpy(), logits.argmax(1).numpy()
    cm = confusion_matrix(y, p)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(cm.sum(0) > 0, np.diag(cm) / cm.sum(0), 0.0)
        recall = np.where(cm.sum(1) > 0, np.diag(cm) / cm.sum(1), 0.0)
    return {
        "loss": loss,
        "correct": correct,
        "total": len(y),
        "accuracy": 100.0 * correct / len(y),
        "precision": [float(v) for v in precision],
        "recall": [float(v) for v in recall],
        "confusion": cm.tolist(),
    }
