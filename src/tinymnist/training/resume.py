"""The one check that a run directory can be continued with a configuration, shared by the CLI, the
Python API and the trainer."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from tinymnist.errors import SettingError, literal
from tinymnist.training.checkpoint import load_checkpoint
from tinymnist.training.config import TrainConfig


def differing_fields(saved: TrainConfig, wanted: TrainConfig) -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig) if getattr(saved, f.name) != getattr(wanted, f.name)]


def check_resumable(run_dir: Path, cfg: TrainConfig, engine: str | None = None) -> dict[str, Any]:
    """The checkpoint of `run_dir` (its last.pt), once it is known that `cfg` continues that run: the
    same configuration and, when `engine` is given, the engine it was trained with. SettingError otherwise,
    naming the settings to change."""
    if not (run_dir / "last.pt").exists():
        what = "does not exist" if not run_dir.exists() else "holds no checkpoint (last.pt)"
        raise SettingError(f"cannot resume {literal(run_dir)}: it {what}; check {{out}}, or leave out {{resume}} to start "
                           "a new run", "out", "resume")
    ckpt = load_checkpoint(run_dir / "last.pt")
    saved = TrainConfig.from_saved(ckpt["config"])
    fields = differing_fields(saved, cfg)
    if fields:
        named = ", ".join(_change(name, getattr(saved, name), getattr(cfg, name)) for name in fields)
        raise SettingError(f"cannot resume {literal(run_dir)}: the settings given differ from its saved configuration "
                           f"({named}); leave those out to continue it, or give another {{out}} to start a new run",
                           *fields, "out")
    trained_with = ckpt.get("engine", "eager")
    if engine is not None and trained_with != engine:
        raise SettingError(f"cannot resume {literal(run_dir)}: it was trained with the {trained_with} engine and this run "
                           f"would use {engine} (pass {{engine:{trained_with}}})", "engine")
    return ckpt


def _change(name: str, saved: Any, wanted: Any) -> str:
    """"{epochs:10 -> 12}": worded "--epochs 10 -> 12" or "epochs=10 -> 12"."""
    change = f"{saved!r} -> {wanted!r}"
    if "{" in change or "}" in change or ":" in change:  # not allowed in a placeholder's value
        return f"{{{name}}} {literal(change)}"
    return f"{{{name}:{change}}}"
