"""Export a checkpoint to ONNX or TorchScript with BatchNorm folded where valid, and check parity
of the exported file against the original PyTorch model."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tinymnist.checkpoint import load_checkpoint, model_from_checkpoint
from tinymnist.errors import UserError
from tinymnist.fold import fold_batchnorm


def parity_inputs(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Inputs in the range the model sees (normalized pixels), from a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 28, 28, generator=g) - 0.1307) / 0.3081


def export(checkpoint: str | Path, fmt: str, out: Path) -> dict[str, Any]:
    """Write the checkpoint's model to `out`; the file appears under that name only once its
    logits agree with PyTorch's (it is written beside it first, then renamed)."""
    if fmt not in ("onnx", "torchscript"):
        raise UserError(f"unknown export format {fmt!r}")
    if out.is_dir():
        raise UserError(f"{out} is a directory; --out takes a file name")
    existing = next(parent for parent in out.parents if parent.exists())
    if not existing.is_dir():
        raise UserError(f"cannot write {out}: {existing} is a file, not a directory")
    reference = model_from_checkpoint(load_checkpoint(checkpoint))
    model, folded = fold_batchnorm(reference)
    x = parity_inputs()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise UserError(f"cannot write into {out.parent}: {exc.strerror}") from None
    tmp = Path(name)
    try:
        with torch.no_grad():
            expected = reference(x).numpy()
            if fmt == "onnx":
                got = _export_onnx(model, x, tmp)
            else:
                torch.jit.trace(model, x[:1]).save(str(tmp))
                got = torch.jit.load(str(tmp))(x).numpy()
        diff = float(abs(got - expected).max())
        if diff > 1e-3:
            raise UserError(f"exported model disagrees with PyTorch (max |logit difference| {diff:.2e}); not written")
        tmp.chmod(0o644)
        os.replace(tmp, out)
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return {"path": str(out), "format": fmt, "folded_bn": folded, "max_abs_diff": diff}


def _export_onnx(model: nn.Module, x: torch.Tensor, out: Path) -> Any:
    import onnxruntime as ort

    torch.onnx.export(model, (x[:1],), str(out), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]
