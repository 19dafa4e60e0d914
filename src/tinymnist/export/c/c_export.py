"""`tinymnist export CKPT --format c --out DIR`: checkpoint -> lowered float ops -> calibrated int8
model -> C source, with the test accuracy of both and (when arm-none-eabi-gcc is installed) the
measured flash and stack written into the header. Both files appear together or not at all."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tinymnist import __version__
from tinymnist.data.mnist import MNIST, load_mnist
from tinymnist.errors import UserError
from tinymnist.evaluation.logits import logits_for
from tinymnist.export.c import codegen, reference, toolchain
from tinymnist.export.c.lower import Unsupported, lower
from tinymnist.export.c.quantize import IntModel, QuantConfig, SchemeError, activation_ranges, calibration_images, quantize
from tinymnist.models.zoo import count_parameters
from tinymnist.training.checkpoint import load_checkpoint, model_from_checkpoint


def quantize_model(model: torch.nn.Module, train_images: np.ndarray, config: QuantConfig | None = None) -> IntModel:
    """The int8 model of a float model, calibrated on training images; UserError if it cannot be."""
    try:
        ops = lower(model)
        config = config or QuantConfig()
        images = calibration_images(train_images, config)
        return quantize(ops, activation_ranges(ops, images, quantile=config.range_quantile))
    except (Unsupported, SchemeError) as exc:
        raise UserError(f"cannot convert the model to int8 C: {exc}") from None


def accuracies(model: torch.nn.Module, int_pred: np.ndarray, data: MNIST) -> dict[str, float]:
    """Float and int8 test accuracy, given the integer reference's predictions on the test set
    (reporting only: nothing is chosen on them)."""
    labels = data.test_labels
    float_pred = logits_for(model, torch.from_numpy(np.array(data.test_images))).argmax(1).numpy()
    return {"float_accuracy": 100.0 * float((float_pred == labels).mean()),
            "int8_accuracy": 100.0 * float((int_pred == labels).mean()),
            "agreement": 100.0 * float((float_pred == int_pred).mean())}


def _not_a_file(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"cannot write C files into {out}: it is a file; --out takes a directory")


def _writable_dir(out: Path) -> None:
    """`out` made and written to once (export_c has checked it is not a file)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".tinymnist-probe-")
        probe.close()
    except OSError as exc:
        raise UserError(f"cannot write into {out}: {exc.strerror or exc}; choose another --out directory") from None


def write_files(out: Path, files: dict[str, str] | dict[str, str | bytes]) -> None:
    """Write all files (text, or bytes as they are) into a temp folder inside `out`, then move them in. A failure midway puts back
    what was there before (an earlier export's files are kept aside until every new file is in), so
    `out` holds either the whole new export or what it held before, never a mix."""
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".tinymnist-export-"))
    earlier = tmp / "earlier"
    earlier.mkdir()
    moved: list[str] = []
    try:
        for name, text in files.items():
            if isinstance(text, bytes):
                (tmp / name).write_bytes(text)
            else:
                (tmp / name).write_text(text)
            (tmp / name).chmod(0o644)
        for name in files:
            if (out / name).exists():
                _keep_aside(out / name, earlier / name)
            os.replace(tmp / name, out / name)
            moved.append(name)
    except OSError as exc:
        for name in moved:  # take back out only what this call moved in, and put back what it replaced
            if (earlier / name).exists():
                os.replace(earlier / name, out / name)
            else:
                (out / name).unlink(missing_ok=True)
        raise UserError(f"cannot write {out}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _keep_aside(path: Path, aside: Path) -> None:
    """A second name for `path`'s content (a hard link where the file system allows, else a copy): the
    file itself stays in place until the new one replaces it in one rename."""
    try:
        os.link(path, aside)
    except OSError:
        shutil.copy2(path, aside)


def convert(checkpoint: str | Path, data_dir: str | Path | None = None,
            config: QuantConfig | None = None) -> tuple[IntModel, dict[str, Any], MNIST]:
    """The checkpoint's int8 model, what describes it (model, params, version, source, float and int8
    test accuracy: what the generated files print) and the data it was calibrated and tested on. The
    C and the web export both start here."""
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt).float()
    data = load_mnist(data_dir)
    int_model = quantize_model(model, data.train_images, config)
    int_pred = reference.predict(int_model, data.test_images)
    meta: dict[str, Any] = {"model": ckpt["model_name"], "params": count_parameters(model), "version": __version__,
                            "source": Path(checkpoint).name, **accuracies(model, int_pred, data)}
    return int_model, meta, data


def export_c(checkpoint: str | Path, out: Path, data_dir: str | Path | None = None,
             config: QuantConfig | None = None, measure: bool = True) -> dict[str, Any]:
    """Write DIR/tinymnist_model.h and .c for the checkpoint's model; returns what was measured."""
    _not_a_file(out)  # before the seconds of work that could not be used
    int_model, meta, _ = convert(checkpoint, data_dir, config)  # a wrong checkpoint fails before DIR is created
    _writable_dir(out)
    header, source = codegen.render(int_model, meta)
    target = toolchain.TARGETS["cortex-m4"]
    if measure and toolchain.have(toolchain.ARM_CC, toolchain.ARM_SIZE):
        with tempfile.TemporaryDirectory(prefix="tinymnist-c-") as tmp:
            write_files(Path(tmp), {codegen.HEADER_NAME: header, codegen.SOURCE_NAME: source})
            try:
                size = toolchain.model_size(Path(tmp), target)
            except toolchain.ToolError as exc:
                raise UserError(f"the generated C does not build for {target.cpu}: {exc}") from None
        meta["flash"] = {"flash": size.flash, "text": size.text, "data": size.data, "stack": size.stack}
        header, source = codegen.render(int_model, meta)
    write_files(out, {codegen.HEADER_NAME: header, codegen.SOURCE_NAME: source})
    plan = codegen.plan(int_model)
    return {**meta, "out": str(out), "ram_static": plan.ram_bytes, "tables": codegen.table_bytes(int_model),
            "files": [str(out / codegen.HEADER_NAME), str(out / codegen.SOURCE_NAME)]}
