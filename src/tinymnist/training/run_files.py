"""The files of a run directory besides the checkpoint: config.json, history.json, metrics.json."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tinymnist.atomic import write_bytes_atomic
from tinymnist.errors import SettingError, literal
from tinymnist.training.checkpoint import save_atomic


@contextlib.contextmanager
def disk_errors(path: Path, epoch: int) -> Iterator[None]:
    """An OSError while writing a run file (a full disk, a removed folder) becomes one clear line. The
    writes are atomic, so the file keeps its previous content."""
    try:
        yield
    except OSError as exc:
        before = f"; {path.parent / 'last.pt'} still holds epoch {epoch}" if epoch else ""
        text = literal(f"cannot write {path}: {exc.strerror or exc}{before}")
        raise SettingError(text + "; free some space (or fix the folder), then continue with {resume}", "resume") from None


def save_run_files(out_dir: Path, checkpoint: dict[str, Any], metrics: dict[str, Any]) -> Path:
    """A run directory from a run held in memory: last.pt, config.json, history.json and metrics.json,
    the files `tinymnist evaluate`, `report`, `export` and `train --resume` read. Returns `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    save_atomic(checkpoint, out_dir / "last.pt")
    write_bytes_atomic(out_dir / "config.json", json.dumps(checkpoint["config"], indent=2).encode())
    steps = len(checkpoint["lrs"]) // max(1, checkpoint["epoch"])
    write_history(out_dir, checkpoint["history"], checkpoint["lrs"], steps, metrics.get("engine", "eager"))
    write_json(out_dir / "metrics.json", metrics)
    return out_dir


def write_history(out_dir: Path, history: list[dict[str, Any]], lrs: list[float], steps_per_epoch: int,
                  engine: str) -> None:
    """history.json: the per-epoch records and the learning rate of every step (what `report` plots)."""
    write_json(out_dir / "history.json", {"epochs": history, "lr_per_step": lrs, "steps_per_epoch": steps_per_epoch,
                                          "engine": engine})


def write_json(path: Path, obj: Any) -> None:
    write_bytes_atomic(path, json.dumps(obj, indent=2).encode())
