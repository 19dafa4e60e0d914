"""All training hyperparameters in one frozen dataclass. The CLI builds it; each run saves it."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tinymnist.backends.native.select import ENGINES
from tinymnist.errors import SettingError, UserError, literal
from tinymnist.models.zoo import DEFAULT_MODEL, model_names, model_recipe

# Fields added after runs were first saved, with the value that means "as before the field existed".
ADDED_LATER: dict[str, Any] = {"clean_epochs": 0, "precise_bn": 0, "engine": "eager", "norm_lr_scale": 1.0,
                               "teacher": "", "distill_weight": 0.5, "distill_temperature": 2.0,
                               "muon_lr": 0.05, "lookahead_steps": 0, "lookahead_alpha": 0.5, "init": "default",
                               "elastic_alpha": 0.0, "elastic_sigma": 4.0}


class ConfigError(SettingError, ValueError):
    """Unusable values in a TrainConfig, each problem naming its field (a ValueError too, as a bad
    dataclass argument is). Its text names each field as it is written in Python."""

    def __init__(self, template: str, *settings: str) -> None:
        super().__init__(template, *settings)
        self.args = (self.worded(lambda setting, value: setting),)

    @classmethod
    def of(cls, problems: list[tuple[str, str]]) -> ConfigError:
        """From (field, what is wrong with it) pairs, as `validation_problems` gives them."""
        template = "; ".join(f"{{{name}}} " + literal(text) for name, text in problems)
        return cls(template, *dict.fromkeys(name for name, _ in problems))


def setting(default: Any, help: str, **cli: Any) -> Any:
    """A TrainConfig field with its one-line help; the command line derives its flag from both (`cli`:
    flag= another spelling, metavar=)."""
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata={"help": help, **cli})
    return field(default=default, metadata={"help": help, **cli})


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on. Each field's help says its unit or meaning; why a default
    was chosen is recorded in docs/research.md."""

    model: str = setting(DEFAULT_MODEL, "registered model, see `tinymnist models`", metavar="NAME")
    model_args: dict[str, Any] = setting({}, "JSON object overriding the model's arguments", metavar="JSON")
    epochs: int = setting(10, "passes over the training set")
    seed: int = setting(0, "seed of initialisation, batch order, augmentation and dropout")
    batch_size: int = setting(64, "images per optimizer step")
    optimizer: str = setting("sgd", "sgd (Nesterov momentum), adam, adamw, or muon (Muon for the hidden dense convs' "
                                    "weights, sgd for the rest)")
    lr: float = setting(0.15, "peak learning rate of the schedule")
    muon_lr: float = setting(0.05, "with optimizer muon: the peak learning rate of the Muon weights (their step is an "
                                   "angle: they are kept at a fixed norm)")
    momentum: float = setting(0.9, "SGD momentum; Adam's beta1")
    weight_decay: float = setting(1e-4, "L2 for sgd/adam, decoupled for adamw (not on BatchNorm parameters and biases)")
    norm_lr_scale: float = setting(1.0, "multiplier of the learning rate for BatchNorm parameters and biases (speed-run "
                                        "trainers raise it); 1 = the same as the weights'")
    schedule: str = setting("onecycle", "onecycle: per batch; article: the article's per-epoch curve; constant")
    warmup: float = setting(0.2, "onecycle: fraction of all steps spent rising to the peak")
    start_div: float = setting(10.0, "the schedule starts at lr / start_div")
    anneal: str = setting("linear", "onecycle's descent to zero: linear or cos")
    label_smoothing: float = setting(0.1, "cross-entropy label smoothing")
    lookahead_steps: int = setting(0, "Lookahead: every N optimizer steps the slow weights move lookahead_alpha of the way "
                                      "to the fast ones, which restart there; 0 = off", metavar="N")
    lookahead_alpha: float = setting(0.5, "Lookahead: the fraction of the way the slow weights move at each sync")
    init: str = setting("default", "default: PyTorch's initialisation; whiten: the first conv's filters start as "
                                   "whitening filters of the training images' patches (+/- pairs)")
    ema: float = setting(0.0, "decay of an exponential moving average of the weights (e.g. 0.999); 0 = off")
    teacher: str = setting("", "knowledge distillation: a trained model (checkpoint, run directory or bundled model's "
                               "name) whose softened predictions on each training batch the model also learns; "
                               "empty = off", metavar="CHECKPOINT")
    distill_weight: float = setting(0.5, "with a teacher: the weight of its soft targets in the loss (the labels' "
                                         "cross-entropy gets 1 - this)")
    distill_temperature: float = setting(2.0, "with a teacher: the softmax temperature of both models' predictions "
                                              "in the distillation term")
    rotate: float = setting(5.0, "augmentation: largest rotation, degrees")
    scale: tuple[float, float] = setting((0.95, 1.05), "augmentation: zoom range (1 = none)", metavar=("LOW", "HIGH"))
    translate: float = setting(1.0, "augmentation: largest shift, pixels")
    elastic_alpha: float = setting(0.0, "augmentation: elastic distortion on top of the affine map, its strength in "
                                        "pixels (Simard et al. 2003 used 34); 0 = off")
    elastic_sigma: float = setting(4.0, "augmentation: the elastic distortion's smoothness, the Gaussian's sigma in "
                                        "pixels")
    augment: bool = setting(True, "train without augmentation (by default: rotate, scale and translate as above)",
                            flag="--no-augment")
    clean_epochs: int = setting(1, "train the last N epochs without augmentation", metavar="N")
    precise_bn: int = setting(0, "before each evaluation, recompute BatchNorm statistics on the first N training "
                                 "images; 0 = off", metavar="N")
    train_subset: int = setting(0, "train on the first N training images only (smoke tests); 0 = all", flag="--subset",
                                metavar="N")
    val_size: int = setting(0, "hold out the last N training images for validation; 0 = none", metavar="N")
    test_subset: int = setting(0, "evaluate on the first N test images only (smoke tests); 0 = all", metavar="N")
    threads: int = setting(0, "CPU threads; 0 = all cores. Part of the configuration: the same seed at another "
                              "thread count gives a (slightly) different result")
    # channels_last (NHWC) suits models with depthwise convs on PyTorch's CPU kernels, NCHW the others.
    memory_format: str = setting("auto", "eager PyTorch's layout: auto (channels_last for models with depthwise "
                                         "convs), channels_last or contiguous")
    # Evaluation runs on the native engine's forward pass under the native engine, where the folded
    # model allows it (evaluation/logits.py).
    engine: str = setting("auto", "auto: the native C kernels when built and the model is supported, else eager "
                                  "PyTorch; native: insist; eager: plain PyTorch")
    eval_batch_size: int = setting(256, "images per evaluation batch (BatchNorm-folded; small enough to stay in cache)")

    def __post_init__(self) -> None:
        problems = validation_problems(self)
        if problems:
            raise ConfigError.of(problems)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def for_model(cls, model: str = DEFAULT_MODEL, **fields: Any) -> TrainConfig:
        """The config that `tinymnist train --model MODEL` starts from: TrainConfig's defaults, then the
        model's recipe, then `fields` (a plain `TrainConfig(model=...)` takes no recipe: its fields
        are its defaults)."""
        return config_with({}, {**fields, "model": model})

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


def config_with(saved: dict[str, Any], overrides: dict[str, Any], recipe: bool = True) -> TrainConfig:
    """The config of saved values ({} for none) with `overrides` on top. Lowest first: TrainConfig's
    defaults, the model's recipe (left out with `recipe=False`), the values a saved run predates
    (`ADDED_LATER`, as `from_saved`), the saved values, the overrides. A complete saved config (a run's
    config.json) thus leaves the recipe no say: it already holds the recipe it was trained with.
    ValueError for anything unusable."""
    model = overrides.get("model", saved.get("model", DEFAULT_MODEL))
    base = recipe_of(model) if recipe else {}
    if saved:
        return TrainConfig.from_saved({**base, **ADDED_LATER, **saved, **overrides})
    return TrainConfig.from_dict({**base, **overrides})


# A recipe says how a model trains best; which data, seed and threads a run uses, and which model it
# trains, belong to the run.
NOT_IN_RECIPES = ("model", "model_args", "seed", "train_subset", "val_size", "test_subset", "threads")


def recipe_problems(recipe: dict[str, Any]) -> list[str]:
    """What is wrong with a recipe's field names (its values are checked as a TrainConfig's are)."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    return ([f"{name} is not a TrainConfig field" for name in recipe if name not in known]
            + [f"{name} belongs to a run, not to a recipe" for name in recipe if name in NOT_IN_RECIPES])


def recipe_of(model: Any) -> dict[str, Any]:
    """The registered model's recipe; {} for a name that is not registered (the CLI and the trainer
    name that error). ValueError for a recipe that names fields it cannot set (a registration bug)."""
    if not isinstance(model, str) or model not in model_names():
        return {}
    recipe = model_recipe(model)
    problems = recipe_problems(recipe)
    if problems:
        raise ValueError(f"the recipe of model {model!r} is unusable: {'; '.join(problems)}")
    return recipe


def recipe_in_effect(cfg: TrainConfig) -> dict[str, Any]:
    """The fields of its model's recipe that `cfg` trains with (those no flag or argument overrode)."""
    recipe = recipe_of(cfg.model)
    resolved = TrainConfig.from_dict({**recipe, "model": cfg.model})  # its values as a config holds them
    return {name: getattr(resolved, name) for name in recipe if getattr(cfg, name) == getattr(resolved, name)}


CHOICES: dict[str, tuple[str, ...]] = {
    "optimizer": ("sgd", "adam", "adamw", "muon"),
    "schedule": ("onecycle", "article", "constant"),
    "anneal": ("linear", "cos"),
    "init": ("default", "whiten"),
    "memory_format": ("auto", "channels_last", "contiguous"),
    "engine": ENGINES,
}


def _type_problems(cfg: TrainConfig) -> list[tuple[str, str]]:
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
            problems.append((f.name, f"has the wrong type ({value!r})"))
    return problems


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validation_problems(cfg: TrainConfig) -> list[tuple[str, str]]:
    """What is wrong with a config: (field, what is wrong with its value) for each unusable field; empty
    when the config is usable."""
    typed = _type_problems(cfg)
    if typed:
        return typed
    problems = [(name, f"must be one of {', '.join(options)}, not {getattr(cfg, name)!r}")
                for name, options in CHOICES.items() if getattr(cfg, name) not in options]
    at_least = {"epochs": 1, "batch_size": 1, "eval_batch_size": 1, "clean_epochs": 0, "precise_bn": 0,
                "train_subset": 0, "lookahead_steps": 0, "val_size": 0, "test_subset": 0, "threads": 0, "seed": 0}
    problems += [(name, f"must be an integer >= {low}, not {getattr(cfg, name)!r}") for name, low in at_least.items()
                 if getattr(cfg, name) < low]
    ranges = {
        "lr": (cfg.lr > 0, "must be > 0"),
        "muon_lr": (cfg.muon_lr > 0, "must be > 0"),
        "weight_decay": (cfg.weight_decay >= 0, "must be >= 0"),
        "norm_lr_scale": (cfg.norm_lr_scale > 0, "must be > 0"),
        "momentum": (0 <= cfg.momentum < 1, "must be in [0, 1)"),
        "warmup": (0 <= cfg.warmup < 1, "must be in [0, 1)"),
        "start_div": (cfg.start_div >= 1, "must be >= 1"),
        "label_smoothing": (0 <= cfg.label_smoothing < 1, "must be in [0, 1)"),
        "ema": (0 <= cfg.ema < 1, "must be in [0, 1)"),
        "lookahead_alpha": (0 < cfg.lookahead_alpha <= 1, "must be in (0, 1]"),
        "distill_weight": (0 <= cfg.distill_weight <= 1, "must be in [0, 1]"),
        "distill_temperature": (cfg.distill_temperature > 0, "must be > 0"),
        "rotate": (cfg.rotate >= 0, "must be >= 0"),
        "translate": (cfg.translate >= 0, "must be >= 0"),
        # beyond ~1,000 pixels every source point is off the image: the setting is a mistake, not a choice
        "elastic_alpha": (0 <= cfg.elastic_alpha <= 1000, "must be in [0, 1000] (pixels)"),
        "elastic_sigma": (cfg.elastic_sigma > 0, "must be > 0"),
        "scale": (0 < cfg.scale[0] <= cfg.scale[1], "must be two numbers 0 < low <= high"),
    }
    return problems + [(name, rule) for name, (ok, rule) in ranges.items() if not ok]
