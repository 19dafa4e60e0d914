"""What the package ships beside the registered models, in `tinymnist/pretrained/`: pretrained weights
(`<name>.pt`, with `<name>.json`: the command that trained them and the run's metrics) and the
measured accuracy of each model over seeds (`frontier.json`, written only by benchmarks/frontier.py).

Paths and plain JSON only; reading the weights into a model is training/checkpoint.py's.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from tinymnist.errors import UserError
from tinymnist.models.zoo import DEFAULT_MODEL, model_kwargs, model_names, model_recipe

MEASURED = "frontier.json"


def pretrained_dir() -> Path:
    return Path(str(resources.files("tinymnist").joinpath("pretrained")))


def pretrained_path(name: str | None = None) -> Path:
    """Where model `name`'s bundled checkpoint is (None: the default model's), whether or not it ships one."""
    return pretrained_dir() / f"{name or DEFAULT_MODEL}.pt"


def pretrained_names() -> list[str]:
    """The registered models that ship pretrained weights, in registry order."""
    return [name for name in model_names() if pretrained_path(name).is_file()]


def bundled_checkpoint(name: str | None = None) -> Path:
    """The bundled checkpoint of model `name` (None: the default model); a UserError naming the bundled
    models when it ships none."""
    name = name or DEFAULT_MODEL
    path = pretrained_path(name)
    if name not in model_names() or not path.is_file():
        what = "ships no pretrained weights" if name in model_names() else "is not a registered model"
        raise UserError(f"no bundled model {name!r}: it {what} (bundled: {', '.join(pretrained_names()) or 'none'})")
    return path


def measured_path() -> Path:
    return pretrained_dir() / MEASURED


def read_measured(path: Path | None = None) -> dict[str, Any] | None:
    """The measured results benchmarks/frontier.py last wrote into the package; None when it never has.
    A UserError when the file cannot be read."""
    path = path or measured_path()
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the measured results {path}: {exc}") from None
    if not isinstance(value, dict) or not isinstance(value.get("models"), dict):
        raise UserError(f"{path} does not hold measured results (no 'models' object)")
    return value


def measured_for(name: str, measured: dict[str, Any] | None) -> dict[str, Any] | None:
    """Model `name`'s measured figures (mean, worst, seeds, ...), when they were measured on the model
    and recipe registered now; None when it was not measured. A model whose arguments or recipe changed
    since gives {"outdated": True, ...}: its old figures describe another network or recipe."""
    entry = (measured or {}).get("models", {}).get(name)
    if not isinstance(entry, dict):
        return None
    now = json.loads(json.dumps({"model_args": model_kwargs(name), "recipe": model_recipe(name)}))  # tuples as lists
    same = all(entry.get(key) == value for key, value in now.items())
    return dict(entry) if same else {**entry, "outdated": True}
