"""Copy a finished run's final weights into the package as a model's bundled pretrained checkpoint.

Usage: python tools/package_pretrained.py RUN_DIR ["EXACT TRAIN COMMAND"] [--model NAME] [--into DIR]

Writes src/tinymnist/pretrained/<model>.pt (weights + model name/arguments + config, no optimizer
state) and <model>.json (the command that trained it and the run's metrics), which `tinymnist
models`, `tinymnist.load_pretrained(NAME)` and every command taking a checkpoint find by the model's
name. The run must be a complete run of the registered model (its own arguments) on the full
training and test sets. `--model NAME` states which model the run must have trained. Without a
command, one is written from config.json: `tinymnist train --model NAME` with the flags that differ
from that model's recipe.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from tinymnist.atomic import write_bytes_atomic
from tinymnist.errors import UserError, flag_name
from tinymnist.models.bundled import pretrained_dir
from tinymnist.models.zoo import model_kwargs, model_names
from tinymnist.training.checkpoint import load_checkpoint, save_atomic
from tinymnist.training.config import TrainConfig

# What a bundled checkpoint keeps: enough to rebuild and describe the model, no optimizer state.
KEPT = ("model_name", "model_args", "model", "ema", "config", "epoch")


def train_command(cfg: TrainConfig) -> str:
    """`tinymnist train` flags that give `cfg`: the model, then each field that differs from what that
    model trains with by default (TrainConfig's defaults with its recipe)."""
    default = TrainConfig.for_model(cfg.model)
    words = ["tinymnist train", flag_name("model", cfg.model)]
    for f in dataclasses.fields(TrainConfig):
        value = getattr(cfg, f.name)
        if f.name == "model" or value == getattr(default, f.name):
            continue
        flag = f.metadata.get("flag", flag_name(f.name))
        if isinstance(value, bool):  # a switch (--no-augment), or its opposite (--augment) against a recipe
            opposite = flag_name(f.name) if flag != flag_name(f.name) else "--no-" + flag[2:]  # as the CLI has it
            words.append(flag if value != f.default else opposite)
        elif isinstance(value, tuple):
            words.append(f"{flag} {' '.join(map(str, value))}")
        elif isinstance(value, dict):
            words.append(f"{flag} '{json.dumps(value)}'")
        else:
            words.append(f"{flag} {value}")
    return " ".join(words)


def check_run(ckpt: dict[str, Any], cfg: TrainConfig, metrics: dict[str, Any], model: str | None,
              allow_subset: bool) -> str:
    """The model a run may be bundled as; a UserError saying why it may not be."""
    name = ckpt["model_name"]
    if model is not None and model != name:
        raise UserError(f"the run trained {name}, not {model}")
    if name not in model_names():
        raise UserError(f"the run trained {name!r}, which is not a registered model ({', '.join(model_names())})")
    if ckpt["model_args"] != model_kwargs(name):
        raise UserError(f"the run trained {name} with other arguments ({ckpt['model_args']}) than the registered "
                        f"model's ({model_kwargs(name)}); a bundled checkpoint is of the registered model")
    if ckpt["epoch"] < cfg.epochs or "interrupted_after_epoch" in metrics:
        raise UserError(f"the run is not complete: {ckpt['epoch']} of {cfg.epochs} epochs trained")
    subsets = {k: getattr(cfg, k) for k in ("train_subset", "test_subset", "val_size") if getattr(cfg, k)}
    if subsets and not allow_subset:
        raise UserError(f"the run did not use the full training and test sets ({subsets}); a bundled model is a "
                        "full run (--allow-subset is for tests)")
    return str(name)


def package(run_dir: Path, command: str | None, model: str | None, into: Path, allow_subset: bool = False) -> Path:
    """Write <into>/<model>.pt and .json from a run directory; returns the .pt path."""
    ckpt = load_checkpoint(run_dir / "last.pt")
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {run_dir / 'metrics.json'} (is the run finished?): {exc}") from None
    cfg = TrainConfig.from_saved(ckpt["config"])
    name = check_run(ckpt, cfg, metrics, model, allow_subset)
    if not into.is_dir():
        raise UserError(f"{into} is not a directory")
    target = into / f"{name}.pt"
    save_atomic({k: ckpt[k] for k in KEPT if k in ckpt}, target)
    record = {"command": command or train_command(cfg), "metrics": metrics}
    write_bytes_atomic(target.with_suffix(".json"), (json.dumps(record, indent=2) + "\n").encode())
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("command", nargs="?", help="the exact command that trained the run (default: derived from "
                        "its config.json)")
    parser.add_argument("--model", metavar="NAME", help="the model the run must have trained (default: the run's)")
    parser.add_argument("--into", type=Path, default=pretrained_dir(),
                        help="where to write NAME.pt and NAME.json (default: the package's pretrained folder)")
    parser.add_argument("--allow-subset", action="store_true", help="accept a run on a subset of the data (tests)")
    args = parser.parse_args()
    try:
        target = package(args.run_dir, args.command, args.model, args.into, args.allow_subset)
    except UserError as exc:
        print(f"package_pretrained.py: error: {exc}", file=sys.stderr)
        sys.exit(1)
    print(f"packaged {args.run_dir} as {target} and {target.with_suffix('.json').name}")


if __name__ == "__main__":
    main()
