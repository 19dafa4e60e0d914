"""Export a checkpoint to ONNX or TorchScript with BatchNorm folded where valid, and check parity
of the exported file against the original PyTorch model."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tinymnist import __version__
from tinymnist.data.normalize import MNIST_MEAN, MNIST_STD
from tinymnist.errors import UserError
from tinymnist.models.fold import fold_batchnorm
from tinymnist.models.zoo import count_parameters
from tinymnist.training.checkpoint import load_checkpoint, model_from_checkpoint

# TorchScript is deprecated upstream (torch.export replaces it), but C++ libtorch still loads it, so
# the format stays. Exporting it is our choice, not the user's: its deprecation notices are not shown.
# Only the "is deprecated" wording is matched; a newer warning (e.g. "not supported ... may break") shows.
TORCHSCRIPT_DEPRECATED = r"`torch\.jit\.(trace|trace_method|save|load)` is deprecated"


def parity_inputs(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Inputs in the range the model sees (normalized pixels), from a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 28, 28, generator=g) - 0.1307) / 0.3081


def check_out_path(out: Path) -> None:
    """A one-line UserError unless `out` can be a new file in an existing directory."""
    if out.is_dir():
        raise UserError(f"{out} is a directory; --out takes a file name")
    if not out.parent.exists():
        raise UserError(f"output directory {out.parent} does not exist; create it first or choose another --out")
    if not out.parent.is_dir():
        raise UserError(f"cannot write {out}: {out.parent} is a file, not a directory")


def export(checkpoint: str | Path, fmt: str, out: Path) -> dict[str, Any]:
    """Write the checkpoint's model to `out`; the file appears under that name only once its
    logits agree with PyTorch's (it is written beside it first, then renamed)."""
    if fmt not in ("onnx", "torchscript"):
        raise UserError(f"unknown export format {fmt!r}")
    check_out_path(out)
    ckpt = load_checkpoint(checkpoint)
    reference = model_from_checkpoint(ckpt)
    model, folded = fold_batchnorm(reference)
    x = parity_inputs()
    try:
        fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        os.close(fd)
    except OSError as exc:
        raise UserError(f"cannot write into {out.parent}: {exc.strerror}") from None
    tmp = Path(name)
    try:
        with torch.no_grad():
            expected = reference(x).numpy()
            if fmt == "onnx":
                about = onnx_metadata(ckpt["model_name"], ckpt["model_args"], count_parameters(reference))
                got = _export_onnx(model, x, tmp, about)
            else:
                got = _export_torchscript(model, x, tmp)
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


def onnx_metadata(model_name: str, model_args: dict[str, Any], params: int) -> dict[str, str]:
    """What an ONNX file says about itself (its metadata_props): the model, and how to feed it."""
    return {
        "tinymnist_version": __version__,
        "model": model_name,
        "model_args": json.dumps(model_args, sort_keys=True),
        "parameters": str(params),
        "input": "input: float32 [N, 1, 28, 28], N = batch size (any)",
        "input_normalization": f"x = (pixel/255 - {MNIST_MEAN}) / {MNIST_STD}",
        "input_polarity": "white digit (255) on black background (0), as in the MNIST IDX files",
        "output": "logits: float32 [N, 10], 10 logits, class = digit 0-9 (apply softmax for probabilities)",
    }


def onnx_doc_string(about: dict[str, str]) -> str:
    """The graph's doc_string: the metadata as one paragraph."""
    return (f"tinymnist {about['tinymnist_version']} MNIST digit classifier, model {about['model']} "
            f"({int(about['parameters']):,} parameters, BatchNorm folded into the convolutions where valid). "
            f"Input {about['input']}: a 28x28 grayscale image, {about['input_polarity']}, normalized as "
            f"{about['input_normalization']}. Output {about['output']}.")


def _export_onnx(model: nn.Module, x: torch.Tensor, out: Path, about: dict[str, str]) -> np.ndarray:
    import onnx
    import onnxruntime as ort

    # The TorchScript-based exporter (dynamo=False) writes the small opset-17 graph with a dynamic batch
    # that the parity check and ONNX Runtime tests cover; torch marks it deprecated (the dynamo exporter
    # refused this model's batch-of-one example), so only its own deprecation notices are silenced here.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"You are using the legacy TorchScript-based ONNX export",
                                category=DeprecationWarning)
        warnings.filterwarnings("ignore", message=r"The feature will be removed", category=DeprecationWarning)
        torch.onnx.export(model, (x[:1],), str(out), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    proto = onnx.load(str(out))
    onnx.helper.set_model_props(proto, {**{p.key: p.value for p in proto.metadata_props}, **about})
    proto.graph.doc_string = onnx_doc_string(about)
    onnx.save(proto, str(out))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


def _export_torchscript(model: nn.Module, x: torch.Tensor, out: Path) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=TORCHSCRIPT_DEPRECATED, category=DeprecationWarning)
        torch.jit.trace(model, x[:1]).save(str(out))
        return torch.jit.load(str(out))(x).numpy()
