"""Knowledge distillation (Hinton, Vinyals and Dean, 2015): a trained teacher's predictions on each
training batch, softened by a temperature, as a second target beside the labels.

The teacher sees the same augmented batch as the student, so its targets follow the augmentation. It
runs as a BatchNorm-folded eval copy (on the native engine's forward pass when the student trains
natively and the engine runs the teacher), and its weights never change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from tinymnist.errors import UserError
from tinymnist.evaluation.logits import native_inference
from tinymnist.models.fold import folded_for_inference
from tinymnist.models.summary import summarize
from tinymnist.models.zoo import count_parameters
from tinymnist.training.checkpoint import load_checkpoint, model_from_checkpoint


@dataclass(frozen=True)
class Teacher:
    """A loaded teacher: `logits(x)` for a normalized N x 1 x 28 x 28 float batch, and what it costs."""

    logits: Callable[[torch.Tensor], torch.Tensor]
    description: dict[str, Any]  # recorded in metrics.json: which model, its parameters and MACs per image


def load_teacher(spec: str, device: torch.device, native: bool) -> Teacher:
    """The teacher named by `spec` (a checkpoint file, a run directory or a bundled model's name) on
    `device`; `native` runs it on the native engine's forward pass where the engine can. A UserError
    when `spec` names no checkpoint, or one whose model does not predict 10 classes."""
    ckpt = load_checkpoint(spec)
    model = model_from_checkpoint(ckpt).to(device)
    with torch.no_grad():
        classes = model(torch.zeros(1, 1, 28, 28, device=device)).shape[-1]
    if classes != 10:
        raise UserError(f"teacher {spec} predicts {classes} classes, not 10; give a digit classifier's checkpoint")
    described = {"teacher": spec, "model": ckpt["model_name"], "params": count_parameters(model),
                 "macs": summarize(model).macs}
    infer = native_inference(model) if native else None
    if infer is None:
        folded = folded_for_inference(model).eval()

        @torch.no_grad()
        def eager(x: torch.Tensor) -> torch.Tensor:
            return folded(x)

        return Teacher(eager, described)
    return Teacher(infer, described)


def distillation_loss(logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor, smoothing: float,
                      weight: float, temperature: float) -> torch.Tensor:
    """(1 - weight) x the labels' cross-entropy (with label smoothing) + weight x T^2 x KL(teacher || student)
    of the predictions softened by temperature T (T^2 keeps the term's gradient on the scale of the
    hard term's as T changes). Mean over the batch."""
    hard = F.cross_entropy(logits, labels, label_smoothing=smoothing)
    soft = F.kl_div(F.log_softmax(logits / temperature, dim=1), F.log_softmax(teacher_logits / temperature, dim=1),
                    reduction="batchmean", log_target=True)
    return (1.0 - weight) * hard + weight * temperature * temperature * soft


def distillation_grad(logits: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor, smoothing: float,
                      weight: float, temperature: float) -> tuple[float, torch.Tensor, int]:
    """`distillation_loss` of a native step's logits: (loss, its gradient w.r.t. the logits, correct
    predictions)."""
    z = logits.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = distillation_loss(z, labels, teacher_logits, smoothing, weight, temperature)
        loss.backward()
    assert z.grad is not None
    return float(loss.detach()), z.grad, int((z.detach().argmax(1) == labels).sum())
