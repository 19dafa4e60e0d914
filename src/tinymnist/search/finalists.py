"""After the trials: the top-K complete trials re-trained on fresh seeds at the search's length and
validation split, the winner (best mean over the seeds), and best.json's training configuration.
A finalist's re-runs are kept in OUT/finals.json, so a repeated command does not re-train them."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tinymnist.atomic import write_bytes_atomic
from tinymnist.data.mnist import MNIST
from tinymnist.search import space
from tinymnist.search.config import SearchConfig, study_signature
from tinymnist.search.objective import trial_config
from tinymnist.search.trials import trial_status
from tinymnist.training.config import TrainConfig

FINAL_EPOCHS = 10  # best.json trains the winner for the full 10-epoch recipe


@dataclass(frozen=True)
class Finalist:
    """A top trial re-trained on fresh seeds (validation accuracy of each)."""

    number: int
    plan: str
    knobs: dict[str, Any]
    params: int
    macs: int
    ram_kb: float | None
    search_accuracy: float
    seeds: list[int] = field(default_factory=list)
    accuracies: list[float] = field(default_factory=list)
    instructions: int | None = None  # predicted per inference on the search's target build (cost model)
    measured_instructions: int | None = None  # QEMU's count of its C export on that build (check_instructions)
    measured_note: str = ""  # why it was not measured

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies)) if self.accuracies else self.search_accuracy

    @property
    def worst(self) -> float:
        return float(min(self.accuracies)) if self.accuracies else self.search_accuracy


def top_trials(trials: list[Any], k: int) -> list[Any]:
    """The k complete trials with the best validation accuracy (fewer parameters first on ties)."""
    complete = [t for t in trials if trial_status(t) == "complete"]
    return sorted(complete, key=lambda t: (-t.value, t.user_attrs["params"], t.number))[:k]


def fresh_seeds(cfg: SearchConfig) -> list[int]:
    """Seeds no trial trained with."""
    return [cfg.seed + 1 + i for i in range(cfg.final_seeds)]


def _read_cache(path: Path, key: dict[str, Any]) -> dict[str, float]:
    """The re-runs finals.json holds for this study and signature ({} for another or none)."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return saved.get("runs", {}) if isinstance(saved, dict) and saved.get("key") == key else {}


def run_finalists(cfg: SearchConfig, trials: list[Any], data: MNIST, out: Path,
                  log: Callable[[str], None] | None = None) -> list[Finalist]:
    """Re-train the top-K trials on fresh seeds (same length and validation split as the search).
    Results are kept in OUT/finals.json, so a repeated command does not re-train them."""
    from tinymnist.training.trainer import Diverged, train_run

    cache_path = out / "finals.json"
    key = {"study": cfg.study, "signature": study_signature(cfg)}
    runs = _read_cache(cache_path, key)
    finalists = []
    for rank, trial in enumerate(top_trials(trials, cfg.top_k), 1):
        candidate = space.candidate_from_params(trial.params, cfg.space, cfg.mcu)
        accuracies = []
        for seed in fresh_seeds(cfg):
            tag = f"{trial.number}:{seed}:{candidate.plan}:{json.dumps(candidate.knobs, sort_keys=True)}"
            if tag not in runs:
                try:
                    trained = train_run(trial_config(candidate, cfg, seed), data)
                    runs[tag] = float(trained.history[-1]["val_accuracy"])
                except Diverged:
                    runs[tag] = 0.0
                write_bytes_atomic(cache_path, json.dumps({"key": key, "runs": runs}, indent=2).encode())
                if log:
                    log(f"finalist {rank} (trial {trial.number}) seed {seed}: validation {runs[tag]:.2f}%")
            accuracies.append(runs[tag])
        a = trial.user_attrs
        finalists.append(Finalist(trial.number, candidate.plan, candidate.knobs, a["params"], a["macs"], a.get("ram_kb"),
                                  float(trial.value), fresh_seeds(cfg), accuracies, a.get("instructions")))
    return finalists


def check_instructions(finalists: list[Finalist], cfg: SearchConfig, image: np.ndarray,
                       log: Callable[[str], None] | None = None) -> list[Finalist]:
    """The finalists with QEMU's instruction count of their int8 C export on the search's target build
    beside the prediction the search budgeted with: the network's shapes with placeholder weights (the
    kernels' counts do not depend on weight values), one training image. Without arm-none-eabi-gcc or
    qemu-system-arm, each says so instead."""
    from tinymnist.export.c import cost, toolchain

    if cfg.build is None:
        return finalists
    if not toolchain.have(toolchain.ARM_CC, toolchain.QEMU):
        note = "not measured: arm-none-eabi-gcc / qemu-system-arm not installed"
        return [dataclasses.replace(f, measured_note=note) for f in finalists]
    checked = []
    for f in finalists:
        try:
            count = cost.measure_instructions(cost.shape_model(space.build_model(f.plan)), *cfg.build, image)
            checked.append(dataclasses.replace(f, measured_instructions=count))
            if log and f.instructions:
                log(f"finalist trial {f.number}: {count:,} {' '.join(cfg.build)} instructions under QEMU, predicted "
                    f"{f.instructions:,} ({100 * (f.instructions / count - 1):+.1f}%)")
        except (toolchain.ToolError, ValueError) as exc:
            checked.append(dataclasses.replace(f, measured_note=f"not measured: {str(exc)[:200]}"))
    return checked


def pick_winner(finalists: list[Finalist]) -> Finalist | None:
    """The best mean over fresh seeds; ties: the better worst seed, then fewer parameters."""
    return min(finalists, key=lambda f: (-f.mean, -f.worst, f.params), default=None)


def final_config(candidate: space.Candidate) -> TrainConfig:
    """best.json: the searched network and knobs at the full recipe's length (10 epochs), on all
    60,000 training images (no validation hold-out), seed 0, every core: `tinymnist train --config`."""
    return TrainConfig(model=space.MODEL, model_args=space.model_args(candidate.plan), epochs=FINAL_EPOCHS,
                       **space.recipe_fields(candidate.knobs))
