"""Export a checkpoint to ONNX or TorchScript with BatchNorm folded where valid, and check parity
of the exported file against the original PyTorch model."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tinymnist.checkpoint import load_checkpoint, model_from_checkpoint
from tinymnist.errors import UserError


def _fold_into_conv_after(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """conv -> BN  ==>  one conv (always valid in eval mode)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = copy.deepcopy(conv)
    fused.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
    return fused


def _fold_into_conv_before(bn: nn.BatchNorm2d, conv: nn.Conv2d) -> nn.Conv2d:
    """BN -> conv without padding  ==>  one conv (with padding, the zeros would not be normalized)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    shift = bn.bias - bn.running_mean * scale
    fused = copy.deepcopy(conv)
    fused.weight = nn.Parameter(conv.weight * scale.view(1, -1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
    fused.bias = nn.Parameter(bias + (conv.weight * shift.view(1, -1, 1, 1)).sum((1, 2, 3)))
    return fused


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """An eval-mode copy of `model` with BatchNorm layers folded into neighbouring convs where that
    is exact; returns (model, number of BatchNorm layers folded). Works on nn.Sequential children."""
    model = copy.deepcopy(model).eval()
    folded = 0
    for parent in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        layers = list(parent)
        out: list[nn.Module] = []
        i = 0
        while i < len(layers):
            layer = layers[i]
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(layer, nn.Conv2d) and isinstance(nxt, nn.BatchNorm2d) and layer.groups == 1:
                out.append(_fold_into_conv_after(layer, nxt))
                folded, i = folded + 1, i + 2
                continue
            if isinstance(layer, nn.BatchNorm2d):
                j = i + 1
                while j < len(layers) and isinstance(layers[j], nn.Dropout):  # identity in eval mode
                    j += 1
                conv = layers[j] if j < len(layers) else None
                if isinstance(conv, nn.Conv2d) and conv.padding in ((0, 0), 0) and conv.groups == 1:
                    out.append(_fold_into_conv_before(layer, conv))
                    folded, i = folded + 1, j + 1
                    continue
            out.append(layer)
            i += 1
        for name in list(parent._modules):
            del parent._modules[name]
        for k, layer in enumerate(out):
            parent.add_module(str(k), layer)
    return model, folded


def parity_inputs(n: int = 64, seed: int = 0) -> torch.Tensor:
    """Inputs in the range the model sees (normalized pixels), from a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, 1, 28, 28, generator=g) - 0.1307) / 0.3081


def export(checkpoint: str | Path, fmt: str, out: Path) -> dict[str, Any]:
    reference = model_from_checkpoint(load_checkpoint(checkpoint))
    model, folded = fold_batchnorm(reference)
    x = parity_inputs()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {out.parent}: {exc.strerror}") from None
    with torch.no_grad():
        expected = reference(x).numpy()
        if fmt == "onnx":
            got = _export_onnx(model, x, out)
        elif fmt == "torchscript":
            scripted = torch.jit.trace(model, x[:1])
            scripted.save(str(out))
            got = torch.jit.load(str(out))(x).numpy()
        else:
            raise UserError(f"unknown export format {fmt!r}")
    diff = float(abs(got - expected).max())
    if diff > 1e-3:
        raise UserError(f"exported model disagrees with PyTorch (max |logit difference| {diff:.2e}); not trusted")
    return {"path": str(out), "format": fmt, "folded_bn": folded, "max_abs_diff": diff}


def _export_onnx(model: nn.Module, x: torch.Tensor, out: Path) -> Any:
    import onnxruntime as ort

    torch.onnx.export(model, (x[:1],), str(out), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]
