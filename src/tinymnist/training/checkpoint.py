"""Self-describing checkpoints: weights plus the model's registry name and arguments, so that any
tool rebuilds the model from the file alone. Written atomically (temp file + rename). Wherever a
checkpoint is taken, a bundled model's name stands for its bundled file (models/bundled.py)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tinymnist.atomic import write_bytes_atomic
from tinymnist.backends.device import resolve_device
from tinymnist.errors import UserError
from tinymnist.models.bundled import bundled_checkpoint, pretrained_names
from tinymnist.models.zoo import create_model, model_names, preferred_memory_format


def save_atomic(obj: Any, path: Path) -> None:
    """torch.save, written atomically: a kill never leaves half a checkpoint."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes_atomic(path, buffer.getvalue())


def resolve_checkpoint(checkpoint: str | Path | None) -> Path:
    """Where a checkpoint argument points: an existing file or run directory as it is, else the bundled
    checkpoint of the model it names (None: the default model's). A UserError naming the bundled
    models for anything else."""
    if checkpoint is None:
        return bundled_checkpoint(None)
    path = Path(checkpoint)
    if path.exists():
        return path
    name = str(checkpoint)
    if name in pretrained_names():
        return bundled_checkpoint(name)
    bundled = ", ".join(pretrained_names()) or "none"
    if name in model_names():
        raise UserError(f"checkpoint not found: {name} is no file or run directory, and model {name} ships no "
                        f"pretrained weights (bundled: {bundled})")
    raise UserError(f"checkpoint not found: {name} is not a checkpoint file, a run directory or the name of a "
                    f"bundled model ({bundled})")


def load_checkpoint(checkpoint: str | Path | None) -> dict[str, Any]:
    """A checkpoint (see `resolve_checkpoint`: a file, a run directory's last.pt, a bundled model's name,
    None for the default bundled model), read safely; a UserError when it is missing or not one."""
    path = resolve_checkpoint(checkpoint)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        # weights_only: tensors and plain containers only, so a foreign file cannot run code on load
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        kind = type(exc).__name__
        raise UserError(f"cannot read checkpoint {path}: it is corrupt or not a tinymnist checkpoint ({kind})") from None
    if not isinstance(ckpt, dict) or not {"model_name", "model_args", "model"} <= set(ckpt):
        raise UserError(f"{path} is not a tinymnist checkpoint")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any], use_ema: bool = True) -> nn.Module:
    """Rebuild the model (in eval mode) from a loaded checkpoint; EMA weights when it has them."""
    model = create_model(ckpt["model_name"], **ckpt["model_args"])
    weights = ckpt.get("ema") if use_ema and ckpt.get("ema") is not None else ckpt["model"]
    model.load_state_dict(weights)
    return model.to(memory_format=preferred_memory_format(model)).eval()


def read_checkpoint(checkpoint: str | Path | None = None) -> dict[str, Any]:
    """A checkpoint, or the bundled pretrained model's when none is given."""
    return load_checkpoint(checkpoint)


def load_model(checkpoint: str | Path | None = None, device: str | torch.device | None = "cpu") -> nn.Module:
    """The model of a checkpoint (a path or a bundled model's name), or the bundled default model when
    none is given (eval mode), on `device` (auto: CUDA, else MPS, else CPU)."""
    return model_from_checkpoint(read_checkpoint(checkpoint)).to(resolve_device(device))


def load_pretrained(name: str | None = None) -> nn.Module:
    """The bundled pretrained model `name` (None: the default model), in eval mode; its sidecar
    `pretrained/<name>.json` says how it was trained and its accuracy."""
    return load_model(bundled_checkpoint(name))
