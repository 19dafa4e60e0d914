"""Choosing where tensors live: `--device auto|cpu|cuda|mps` (also `cuda:N`).

`auto` takes a CUDA GPU when torch sees one, else Apple's MPS, else the CPU. Asking for a device this
machine lacks is a user error that names what torch found and the flag to use instead.
"""

from __future__ import annotations

import torch
from torch import nn

from tinymnist.errors import UserError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(choice: str | torch.device | None = "auto") -> torch.device:
    """The torch device for a `--device` value (None means auto)."""
    if isinstance(choice, torch.device):
        choice = str(choice)
    name = (choice or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind not in DEVICE_CHOICES[1:] or (index and not index.isdigit()):
        raise UserError(f"unknown device {choice!r}; use one of {', '.join(DEVICE_CHOICES)} (or cuda:N)")
    if kind == "cuda":
        if not torch.cuda.is_available():
            build = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
            raise UserError(f"--device {name}: torch {torch.__version__} ({build}) finds no CUDA GPU on this machine; "
                            "use --device cpu (or auto)")
        if index and int(index) >= torch.cuda.device_count():
            raise UserError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                            f"numbered from 0; use --device cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if kind == "mps" and not _mps_available():
        raise UserError(f"--device mps: torch {torch.__version__} finds no Apple MPS device on this machine; "
                        "use --device cpu (or auto)")
    return torch.device(name)


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's parameters (the CPU for a model without any)."""
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def describe(device: torch.device) -> str:
    """What metrics.json and the logs record: "cpu", or "cuda (NVIDIA H100 80GB HBM3)"."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type
