"""What a search depends on (SearchConfig) and what its finalists measured (Finalist): the records that
the study, its workers and its report share."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tinymnist.search import space


@dataclass(frozen=True)
class SearchConfig:
    """Everything a search depends on. Budgets: None = no limit (max_ram_kb in KiB of static int8 RAM)."""

    max_params: int = 5000
    max_macs: int | None = None
    max_ram_kb: float | None = None
    epochs: int = 3  # per trial (and per finalist re-run)
    trials: int = 50  # trained trials in the study, in total (a continued study counts its earlier ones)
    timeout: float | None = None  # seconds after which no new trial starts (finalists run after)
    storage: str | None = None  # an SQLAlchemy URL; None = sqlite:///OUT/study.db
    study: str = "tinymnist"
    jobs: int = 1  # worker processes (one torch thread each when > 1)
    val_size: int = 10_000  # the last N training images: the only data anything is chosen on
    train_subset: int = 0  # train on the first N remaining training images; 0 = all
    seed: int = 0  # training seed of the trials and the sampler's seed; finalists use seed+1...
    out: str = "runs/search"
    top_k: int = 3  # complete trials re-run on fresh seeds
    final_seeds: int = 3
    data_dir: str | None = None
    heartbeat: int = 10  # seconds between a running trial's heartbeats; stale (FAIL, retried) after 3x
    space: str = "full"  # full: network and recipe knobs; network: the recipe fixed to TrainConfig's defaults
    baseline: bool = True  # a new study's first trial is the default model (with the default recipe), if it fits

    def __post_init__(self) -> None:
        problems = config_problems(self)
        if problems:
            raise ValueError("; ".join(problems))


def config_problems(cfg: SearchConfig) -> list[str]:
    """What is wrong with a search config, one phrase per field."""
    def bad_int(value: Any, low: int) -> bool:
        return not isinstance(value, int) or isinstance(value, bool) or value < low

    problems = [f"{name} must be an integer >= {low}, not {getattr(cfg, name)!r}"
                for name, low in (("max_params", 1), ("epochs", 1), ("trials", 1), ("jobs", 1), ("val_size", 1),
                                  ("train_subset", 0), ("seed", 0), ("top_k", 1), ("final_seeds", 0), ("heartbeat", 1))
                if bad_int(getattr(cfg, name), low)]
    if cfg.max_macs is not None and bad_int(cfg.max_macs, 1):
        problems.append(f"max_macs must be an integer >= 1, not {cfg.max_macs!r}")
    for name in ("max_ram_kb", "timeout"):
        value = getattr(cfg, name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)
                                  or not math.isfinite(value) or value <= 0):
            problems.append(f"{name} must be a number > 0, not {value!r}")
    if cfg.space not in space.SPACES:
        problems.append(f"space must be one of {', '.join(space.SPACES)}, not {cfg.space!r}")
    if not cfg.study or not isinstance(cfg.study, str):
        problems.append("study must be a non-empty name")
    return problems


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

    @property
    def mean(self) -> float:
        return float(np.mean(self.accuracies)) if self.accuracies else self.search_accuracy

    @property
    def worst(self) -> float:
        return float(min(self.accuracies)) if self.accuracies else self.search_accuracy
