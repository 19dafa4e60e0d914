"""All training hyperparameters in one frozen dataclass. The CLI builds it; each run saves it."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinymnist.backends.native.select import ENGINES
from tinymnist.errors import UserError
from tinymnist.models.zoo import DEFAULT_MODEL

# Fields added after runs were first saved, with the value that means "as before the field existed".
ADDED_LATER: dict[str, Any] = {"clean_epochs": 0, "precise_bn": 0, "engine": "eager"}


@dataclass(frozen=True)
class TrainConfig:
    model: str = DEFAULT_MODEL  # registry name (tinymnist models)
    model_args: dict[str, Any] = field(default_factory=dict)  # overrides of the registry defaults
    epochs: int = 10
    seed: int = 0
    batch_size: int = 64  # research: 64 beat 128 on validation (more steps in 10 epochs); docs/research.md
    optimizer: str = "sgd"  # sgd (Nesterov momentum) | adam | adamw
    lr: float = 0.15  # peak learning rate of the schedule (research round 8: 0.15 over 0.1 on fresh validation seeds)
    momentum: float = 0.9  # SGD momentum; Adam's beta1
    weight_decay: float = 1e-4  # L2 for sgd/adam, decoupled for adamw; 5e-4 underfits this tiny net
    schedule: str = "onecycle"  # onecycle (per batch) | article (the article's per-epoch curve) | constant
    warmup: float = 0.2  # fraction of all steps spent rising to the peak (onecycle)
    start_div: float = 10.0  # the schedule starts at lr / start_div
    anneal: str = "linear"  # onecycle's descent to zero: linear | cos
    label_smoothing: float = 0.1
    ema: float = 0.0  # decay of an exponential moving average of the weights; 0 = off
    rotate: float = 5.0  # augmentation: max rotation, degrees (10 was no better for a net this small)
    scale: tuple[float, float] = (0.95, 1.05)  # augmentation: zoom range (1 = none)
    translate: float = 1.0  # augmentation: max shift, pixels
    augment: bool = True
    clean_epochs: int = 1  # the last N epochs train on un-augmented images (research round 4: +0.05 val)
    precise_bn: int = 0  # before each evaluation, recompute BatchNorm statistics on the first N training images; 0 = off
    train_subset: int = 0  # use only the first N training images (smoke tests); 0 = all
    val_size: int = 0  # hold out the last N training images as a validation set (research); 0 = none
    test_subset: int = 0  # evaluate on only the first N test images (smoke tests); 0 = all
    threads: int = 0  # torch intra-op threads; 0 = all available cores
    # Memory layout. "auto": channels_last (NHWC) for models with depthwise convs, where it measured
    # 1.2-1.6x faster; contiguous (NCHW) otherwise, where channels_last measured up to 1.5x slower.
    memory_format: str = "auto"  # auto | channels_last | contiguous
    # Training engine: native C kernels (tinymnist.backends.native) when built and the model is supported, else
    # eager PyTorch ("auto"); "native" insists, "eager" is the reference. Evaluation is always eager.
    engine: str = "auto"  # auto | native | eager
    eval_batch_size: int = 256  # evaluation runs BatchNorm-folded; 256 fits in cache (2,000 was 5-8x slower)

    def __post_init__(self) -> None:
        problems = validation_problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_saved(cls, values: dict[str, Any]) -> TrainConfig:
        """A config read back from a run (config.json, a checkpoint): a field the run predates takes
        the value that reproduces how it was trained, not today's default."""
        return cls.from_dict({**ADDED_LATER, **values})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from JSON-like values; anything unusable is a ValueError naming the fields."""
        if not isinstance(values, dict):
            raise ValueError(f"a config is a JSON object of fields, not {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown config fields: {', '.join(sorted(unknown))}")
        values = dict(values)
        if isinstance(values.get("scale"), list):
            values["scale"] = tuple(values["scale"])
        return cls(**values)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A saved configuration (a run's config.json, a search's best.json) as a dict; a UserError when
    the file cannot be read or is not a JSON object."""
    path = Path(path).expanduser()
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read config {path}: {exc}") from None
    if not isinstance(value, dict):
        raise UserError(f"config {path} is not a JSON object")
    return value


def config_with(saved: dict[str, Any], overrides: dict[str, Any]) -> TrainConfig:
    """The config of saved values ({} for none) with `overrides` on top; a field the saved run predates
    takes the value it was trained with (`from_saved`). ValueError for anything unusable."""
    return TrainConfig.from_saved({**saved, **overrides}) if saved else TrainConfig.from_dict(overrides)


CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("sgd", "adam", "adamw"),
    "schedule": ("onecycle", "article", "constant"),
    "anneal": ("linear", "cos"),
    "memory_format": ("auto", "channels_last", "contiguous"),
    "engine": ENGINES,
}


def _type_problems(cfg: TrainConfig) -> list[str]:
    """Fields whose value is not of the field's kind (a config read from JSON can hold anything)."""
    problems = []
    for f in dataclasses.fields(cfg):
        value, default = getattr(cfg, f.name), getattr(TrainConfig, f.name, None)
        if f.name == "model_args":
            ok = isinstance(value, dict)
        elif f.name == "scale":
            ok = isinstance(value, tuple) and len(value) == 2 and all(_is_number(v) for v in value)
        elif isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, float):
            ok = _is_number(value)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            problems.append(f"{f.name} has the wrong type ({value!r})")
    return problems


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validation_problems(cfg: TrainConfig) -> list[str]:
    """What is wrong with a config, one phrase per field (empty when it is usable)."""
    typed = _type_problems(cfg)
    if typed:
        return typed
    problems = [f"{name} must be one of {', '.join(options)}, not {getattr(cfg, name)!r}"
                for name, options in CHOICES.items() if getattr(cfg, name) not in options]
    at_least = {"epochs": 1, "batch_size": 1, "eval_batch_size": 1, "clean_epochs": 0, "precise_bn": 0,
                "train_subset": 0, "val_size": 0, "test_subset": 0, "threads": 0, "seed": 0}
    problems += [f"{name} must be an integer >= {low}, not {getattr(cfg, name)!r}" for name, low in at_least.items()
                 if not isinstance(getattr(cfg, name), int) or isinstance(getattr(cfg, name), bool)
                 or getattr(cfg, name) < low]
    checks = {
        "lr must be > 0": cfg.lr > 0,
        "weight_decay must be >= 0": cfg.weight_decay >= 0,
        "momentum must be in [0, 1)": 0 <= cfg.momentum < 1,
        "warmup must be in [0, 1)": 0 <= cfg.warmup < 1,
        "start_div must be >= 1": cfg.start_div >= 1,
        "label_smoothing must be in [0, 1)": 0 <= cfg.label_smoothing < 1,
        "ema must be in [0, 1)": 0 <= cfg.ema < 1,
        "rotate must be >= 0": cfg.rotate >= 0,
        "translate must be >= 0": cfg.translate >= 0,
        "scale must be two numbers 0 < low <= high": len(cfg.scale) == 2 and 0 < cfg.scale[0] <= cfg.scale[1],
    }
    problems += [message for message, ok in checks.items() if not ok]
    if not isinstance(cfg.model_args, dict):
        problems.append("model_args must be a JSON object")
    return problems
