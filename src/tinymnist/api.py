"""The Python API, for notebooks and scripts: the same steps as the command line, returning objects.

    import tinymnist
    run = tinymnist.train(epochs=3, train_subset=5000)   # a Run: .model .metrics .history .config
    run.save("runs/mine")                               # a run directory `tinymnist report` reads
    tinymnist.evaluate(run.model)                       # accuracy, loss, confusion, ...
    tinymnist.predict(["digit.png"])                    # the bundled model when none is given

Everything here is re-exported by `tinymnist` itself; names not listed in `tinymnist.__all__` may
change between versions.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from tinymnist.data.mnist import MNIST
from tinymnist.errors import SettingError, UserError, literal
from tinymnist.models.summary import Summary
from tinymnist.training.config import ConfigError, TrainConfig, config_with, read_config_file

# What `predict` accepts as one image.
ImageLike = str | Path | bytes | Image.Image | np.ndarray


@dataclass(frozen=True)
class Run:
    """A training run held in memory. `model` is the trained network in eval mode (the weight average
    when the run kept one), on the device it trained on; `metrics` the final figures (as in
    metrics.json); `history` one record per epoch; `config` the TrainConfig it trained with."""

    model: nn.Module
    metrics: dict[str, Any]
    history: list[dict[str, Any]]
    config: TrainConfig
    path: Path | None = None  # the run directory when it was trained with `out=`, or saved
    interrupted: bool = False  # stopped by Ctrl-C: model, metrics and history are the last full epoch's
    checkpoint: dict[str, Any] = field(default_factory=dict, repr=False)  # what last.pt holds

    def save(self, path: str | Path) -> Path:
        """Write the run: `path` ending in .pt is one checkpoint file (loadable by `tinymnist.load`,
        `tinymnist evaluate/predict/export`); any other path becomes a run directory (last.pt, config,
        history, metrics: `tinymnist report` and `train --resume` read it). Returns the path written."""
        from tinymnist.training.checkpoint import save_atomic
        from tinymnist.training.run_files import save_run_files

        target = Path(path).expanduser()
        if target.suffix == ".pt":
            if not target.parent.is_dir():
                raise UserError(f"directory {target.parent} does not exist; create it or choose another path")
            save_atomic(self.checkpoint, target)
            return target
        if target.exists() and not target.is_dir():
            raise UserError(f"{target} is a file; give a directory, or a path ending in .pt")
        return save_run_files(target, self.checkpoint, self.metrics)

    @property
    def lr_per_step(self) -> list[float]:
        """The learning rate of every optimizer step (the one-cycle curve)."""
        return list(self.checkpoint.get("lrs", []))

    def __repr__(self) -> str:
        m = self.metrics
        where = f", saved in {self.path}" if self.path else ", not saved (run.save(path) keeps it)"
        stop = f", interrupted after epoch {m['epochs']}" if self.interrupted else ""
        return (f"Run({m['model']}, {m['params']:,} parameters, {m['epochs']} epochs{stop}, final test accuracy "
                f"{m['final_test_accuracy']:.2f}%{where})")


def _config(config: TrainConfig | dict[str, Any] | str | Path | None, overrides: dict[str, Any]) -> TrainConfig:
    if isinstance(config, str | Path):
        config = read_config_file(config)
    if isinstance(config, TrainConfig):
        base = dataclasses.asdict(config)
    elif isinstance(config, dict):
        base = dict(config)
    elif config is None:
        base = {}
    else:
        raise TypeError(f"config must be a TrainConfig, a dict or a path to a JSON file, not {type(config).__name__}")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"train() got unknown setting(s) {', '.join(unknown)}; settings are the TrainConfig fields: "
                        f"{', '.join(sorted(known))}")
    try:
        return config_with(base, overrides)
    except ConfigError as exc:  # as it is: its text names each field, which is also train()'s keyword argument
        raise ConfigError("bad training configuration: " + exc.template, *exc.settings) from None
    except (TypeError, ValueError) as exc:
        raise UserError(f"bad training configuration: {exc}") from None


def train(config: TrainConfig | dict[str, Any] | str | Path | None = None, *, data_dir: str | Path | None = None,
          out: str | Path | None = None, resume: bool = False, device: str = "auto", verbose: bool = True,
          **overrides: Any) -> Run:
    """Train a model and return the Run. `config`: a TrainConfig, a dict of its fields, or a JSON file
    (e.g. a run's config.json); keyword `overrides` set single fields (`epochs=3`, `model="reference"`).
    The model's own recipe (`tinymnist models`) fills the fields that neither `overrides` nor a dict or
    file `config` set; a TrainConfig is complete and is taken as it is (`TrainConfig.for_model(name)`
    gives one with the recipe).

    `out`: a run directory written every epoch, as `tinymnist train --out` does (`resume=True`
    continues it). Without `out` nothing is written, and nothing is lost: the Run holds the weights and
    `run.save(path)` writes them. Ctrl-C (a notebook's "interrupt") stops training and returns the
    last completed epoch. `verbose` prints the per-epoch log."""
    from tinymnist.data.mnist import load_mnist
    from tinymnist.training.resume import check_resumable
    from tinymnist.training.trainer import format_epoch, train_run

    cfg = _config(config, overrides)
    out_dir = Path(out).expanduser() if out is not None else None
    if out_dir is not None and (out_dir / "last.pt").exists() and not resume:
        raise SettingError(f"{literal(out_dir)} already holds a run; pass {{resume:True}} to continue it or another {{out}}",
                           "resume", "out")
    if resume and out_dir is None:
        raise SettingError("cannot resume: no run directory; give {out} the run directory", "out")
    if resume and out_dir is not None:
        check_resumable(out_dir, cfg)  # the trainer checks the engine too, once it has chosen one
    data = load_mnist(data_dir)

    def log(record: dict[str, Any]) -> None:
        if verbose:
            print(format_epoch(record, cfg.epochs), flush=True)

    trained = train_run(cfg, data, out_dir, resume=resume, on_epoch=log, device=device, data_dir=data_dir,
                        notice=lambda line: print(f"tinymnist: {line}", file=sys.stderr), keep_on_interrupt=True)
    if trained.interrupted:
        print(f"tinymnist: interrupted; the Run holds epoch {trained.metrics['epochs']} of {cfg.epochs}",
              file=sys.stderr)
    return Run(model=trained.model, metrics=trained.metrics, history=trained.history, config=cfg, path=out_dir,
               interrupted=trained.interrupted, checkpoint=trained.checkpoint)


def load_mnist(data_dir: str | Path | None = None) -> MNIST:
    """The four MNIST arrays (train/test images as N x 28 x 28 uint8, labels as int64): `data_dir`, else
    $TINYMNIST_DATA, else the user cache, downloaded there (checksum-verified) on first use."""
    from tinymnist.data.mnist import load_mnist as load_files

    return load_files(data_dir)


def load(path: str | Path, device: str = "cpu") -> nn.Module:
    """The model of a checkpoint file or run directory (or, when no such path exists, of the bundled
    model it names: `load("separable")`), in eval mode, on `device`."""
    from tinymnist.training.checkpoint import load_model

    return load_model(Path(path).expanduser(), device)


def load_pretrained(name: str | None = None, *, device: str = "cpu") -> nn.Module:
    """The bundled pretrained model `name` (None: the default model), in eval mode, on `device`;
    `tinymnist models` lists which models ship weights, `pretrained/<name>.json` how they were trained."""
    from tinymnist.models.bundled import bundled_checkpoint
    from tinymnist.training.checkpoint import load_model

    return load_model(bundled_checkpoint(name), device)


def _model_of(model: nn.Module | Run | str | Path | None, device: str) -> nn.Module:
    if isinstance(model, Run):
        return model.model
    if isinstance(model, nn.Module):
        return model
    if model is None:
        return load_pretrained(device=device)
    return load(model, device)


def evaluate(model: nn.Module | Run | str | Path, data_dir: str | Path | None = None,
             device: str = "cpu") -> dict[str, Any]:
    """Test-set figures of a model, a Run, a checkpoint file / run directory, or a bundled model's name:
    accuracy (%), loss, correct, total, per-class precision and recall, the confusion matrix (rows: true
    digit) and `probabilities` (a 10,000 x 10 numpy array). A checkpoint trained on a test subset is evaluated
    on that subset, as `tinymnist evaluate` does; a model, on all 10,000 images."""
    from tinymnist.data.mnist import load_mnist
    from tinymnist.evaluation.logits import logits_for
    from tinymnist.evaluation.metrics import metrics_from_logits

    data = load_mnist(data_dir)
    if isinstance(model, str | Path):
        from tinymnist.analysis.report import evaluate_loaded
        from tinymnist.training.checkpoint import load_checkpoint

        return evaluate_loaded(load_checkpoint(Path(model).expanduser()), data, device)
    net = _model_of(model, device)
    logits = logits_for(net, torch.from_numpy(data.test_images.copy()))
    metrics = metrics_from_logits(logits, torch.from_numpy(data.test_labels))
    metrics["probabilities"] = torch.softmax(logits.cpu(), 1).numpy()
    return metrics


def _digit(image: ImageLike, name: str) -> np.ndarray:
    """The 28 x 28 uint8 input for one image. A 28 x 28 uint8 array is taken as an MNIST digit as is
    (white ink on black, as in the dataset); files, bytes, PIL images and other arrays go through the
    same preprocessing as `tinymnist predict` (polarity, cropping, centring)."""
    from tinymnist.data.preprocess import array_to_image, load_digit, to_mnist

    if isinstance(image, np.ndarray):
        if image.shape == (28, 28) and image.dtype == np.uint8:
            return image
        return to_mnist(array_to_image(image, name), name)
    if isinstance(image, Image.Image):
        return to_mnist(image, name)
    if isinstance(image, str | Path | bytes):
        return load_digit(image if isinstance(image, bytes) else Path(image).expanduser(), name)
    raise TypeError(f"{name}: cannot read a {type(image).__name__} as an image (give a path, bytes, a PIL image "
                    "or a numpy array)")


def predict(images: ImageLike | Sequence[ImageLike], model: nn.Module | Run | str | Path | None = None,
            top: int = 3, device: str = "cpu") -> list[dict[str, Any]]:
    """The digit in each image: a list (one dict per image, in order) of `label`, `probability`, `top`
    (the `top` likeliest labels with probabilities), `probabilities` (all ten) and `input` (the 28 x 28
    uint8 array the model saw). `images`: one image or a list of paths, bytes, PIL images or numpy
    arrays; an N x 28 x 28 uint8 array is N MNIST digits. `model`: a model, a Run, a checkpoint path,
    a bundled model's name, or None for the bundled default model."""
    from tinymnist.evaluation.predict import predict_digits

    if isinstance(images, np.ndarray) and images.ndim == 3 and images.shape[1:] == (28, 28) and images.dtype == np.uint8:
        items: list[ImageLike] = list(images)
    elif isinstance(images, str | Path | bytes | Image.Image | np.ndarray):
        items = [images]
    else:
        items = list(images)
    if not 1 <= top <= 10:
        raise ValueError(f"top must be from 1 to 10, not {top}")
    if not items:
        return []
    digits = np.stack([_digit(item, item if isinstance(item, str | Path) else f"image {i}")  # type: ignore[arg-type]
                       for i, item in enumerate(items)])
    results = predict_digits(_model_of(model, device), digits, top=top)
    for result, digit in zip(results, digits, strict=True):
        result["input"] = digit
    return results


def summary(model: nn.Module | Run | str | None = None) -> Summary:
    """The article's network description: per-layer output shape, parameters, MACs and receptive
    field, with totals (`print()` it for the table). `model`: a model, a Run, a registered model name,
    or None for the default model."""
    from tinymnist.models.summary import summarize
    from tinymnist.models.zoo import DEFAULT_MODEL, create_model

    if model is None or isinstance(model, str):
        name = model or DEFAULT_MODEL
        try:
            net = create_model(name)
        except KeyError as exc:
            raise UserError(str(exc.args[0])) from None
    else:
        net = model.model if isinstance(model, Run) else model
    return summarize(copy.deepcopy(net).cpu())  # a copy: the caller's model stays where it is
