"""Everything a search depends on, in one frozen dataclass (the CLI builds it from the flags), and the
part of it a study is bound to: a stored study is only continued with the same space and objective."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from tinymnist.search import space


@dataclass(frozen=True)
class SearchConfig:
    """The budgets, the trial length and split, the study's storage and the finalists' re-runs."""

    max_params: int = 5000  # parameter budget
    max_macs: int | None = None  # multiply-accumulates per image; None = no limit
    max_ram_kb: float | None = None  # KiB of static int8 RAM of the C export; None = no limit
    max_instructions: int | None = None  # instructions per inference on `target` (cost model); None = no limit
    target: str | None = None  # a microcontroller (space.TARGETS): its instruction cost and the microcontroller space
    opt: str | None = None  # the target build's optimization, -O2 or -Os; None = space.DEFAULT_OPT[target]
    epochs: int = 3  # per trial (and per finalist re-run)
    trials: int = 50  # trained trials in the study, in total (a continued study counts its earlier ones)
    timeout: float | None = None  # seconds after which no new trial starts (finalists run after)
    storage: str | None = None  # an SQLAlchemy URL; None = sqlite:///OUT/study.db
    study: str = "tinymnist"  # the study's name in the storage
    jobs: int = 1  # worker processes (one torch thread each when > 1)
    val_size: int = 10_000  # the last N training images: the only data anything is chosen on
    train_subset: int = 0  # train on the first N remaining training images; 0 = all
    seed: int = 0  # training seed of the trials and the sampler's seed; finalists use seed+1...
    out: str = "runs/search"  # where the report, best.json and the default SQLite study go
    top_k: int = 3  # complete trials re-run on fresh seeds
    final_seeds: int = 3  # fresh seeds per finalist; 0 = the winner rests on the search's one seed
    data_dir: str | None = None  # the MNIST files; None = $TINYMNIST_DATA, else the user cache
    heartbeat: int = 10  # seconds between a running trial's heartbeats; stale (FAIL, retried) after 3x
    space: str = "full"  # full: network and recipe knobs; network: the recipe fixed to TrainConfig's defaults
    baseline: bool = True  # a new study's first trial is the default model (with the default recipe), if it fits

    def __post_init__(self) -> None:
        problems = config_problems(self)
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def mcu(self) -> bool:
        """A microcontroller search: the space admits an input max-pool and takes widths in fours."""
        return self.target is not None

    @property
    def build(self) -> tuple[str, str] | None:
        """(cpu, optimization) whose predicted instructions the search budgets and reports."""
        return None if self.target is None else space.target_build(self.target, self.opt)


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
    if cfg.max_instructions is not None and bad_int(cfg.max_instructions, 1):
        problems.append(f"max_instructions must be an integer >= 1, not {cfg.max_instructions!r}")
    if cfg.target is not None and cfg.target not in space.TARGETS:
        problems.append(f"target must be one of {', '.join(space.TARGETS)}, not {cfg.target!r}")
    elif cfg.opt is not None and cfg.opt not in space.OPTS:
        problems.append(f"opt must be one of {', '.join(space.OPTS)}, not {cfg.opt!r}")
    elif cfg.target is not None and space.target_build(cfg.target, cfg.opt) not in space.BUILDS:
        allowed = [o for c, o in space.BUILDS if c == cfg.target]
        problems.append(f"opt must be {' or '.join(allowed)} for target {cfg.target}, not {cfg.opt!r} (the builds the "
                        "instruction cost model knows)")
    elif cfg.opt is not None and cfg.target is None:
        problems.append("opt must come with a target (the microcontroller whose build it is)")
    if cfg.max_instructions is not None and cfg.target is None:
        problems.append(f"max_instructions must come with a target: the microcontroller, {' or '.join(space.TARGETS)}")
    if cfg.space not in space.SPACES:
        problems.append(f"space must be one of {', '.join(space.SPACES)}, not {cfg.space!r}")
    if not cfg.study or not isinstance(cfg.study, str):
        problems.append("study must be a non-empty name")
    return problems


def objective_settings(cfg: SearchConfig) -> dict[str, Any]:
    """What the trials' scores depend on besides the space: a study is continued only with the same."""
    settings = {"epochs": cfg.epochs, "val_size": cfg.val_size, "train_subset": cfg.train_subset, "seed": cfg.seed,
                "max_params": cfg.max_params, "max_macs": cfg.max_macs, "max_ram_kb": cfg.max_ram_kb,
                "metric": "validation accuracy at the last epoch"}
    if cfg.build is not None:  # only then: studies made before these settings existed continue unchanged
        settings.update(max_instructions=cfg.max_instructions, target=" ".join(cfg.build))
    return settings


def study_signature(cfg: SearchConfig) -> dict[str, Any]:
    """The space and objective a study is made with (JSON round-tripped, as the storage returns it)."""
    return json.loads(json.dumps({"space": space.describe(cfg.space, cfg.mcu), "objective": objective_settings(cfg)}))
