"""`tinymnist search`: an Optuna study for the best network and recipe under parameter, MAC and RAM
budgets, chosen on a validation slice of the training set (the test set is never read).

How it runs, and where each part lives:

* Every check that can refuse the search comes first, before any training: the budgets are reachable
  (budgets), --out is writable, the storage opens (storage), and the study is new or was made with the
  same space and objective (here). A new study's first trial is the default model, when it fits.
* Workers (workers) run trials on the study until it holds `trials` trained trials: each samples a
  candidate (space), rejects it over a budget before any training, else trains it for `epochs` epochs
  on the training set minus its last `val_size` images, pruned by the median of earlier trials
  (objective). TPE (seeded, multivariate) learns the budgets through its constraints.
* The study lives in an RDB storage, so running the same command again continues it: `trials` counts
  the study's trained trials (complete, pruned or diverged; rejected candidates cost milliseconds and
  do not count), finished ones are never redone, and a trial left RUNNING by a killed process stops
  sending heartbeats, is marked FAIL and retried once with the same parameters.
* The top-K complete trials are re-trained on fresh seeds; the winner has the best mean (finalists).
  With a microcontroller target, each finalist's C export is also built and run under QEMU (when
  arm-none-eabi-gcc and qemu-system-arm are installed), its instructions set beside the prediction.
  The report (report) writes trials.csv, best.json, pareto.png and search.md.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinymnist.errors import UserError
from tinymnist.search import report, space
from tinymnist.search.budgets import budget_reason, check_reachable
from tinymnist.search.config import SearchConfig, study_signature
from tinymnist.search.finalists import Finalist, check_instructions, final_config, pick_winner, run_finalists
from tinymnist.search.monitor import Monitor
from tinymnist.search.objective import load_train_data
from tinymnist.search.storage import open_storage, quiet_optuna, shown_url, storage_error, storage_errors, storage_url
from tinymnist.search.trials import status_counts
from tinymnist.search.workers import run_worker, run_workers
from tinymnist.training.config import TrainConfig

# The CLI's names: it imports them from here.
__all__ = ["SearchConfig", "SearchResult", "prepare", "run_search", "shown_url", "storage_url"]

STUDY_ATTR = "tinymnist_search"  # the study's user_attr holding the space and objective it was made with


@dataclass(frozen=True)
class SearchResult:
    """What run_search did: the study's trials by status, the finalists, the winner and the files written."""

    out: Path
    storage: str  # password hidden
    study: str
    counts: dict[str, int]  # trials by status
    finalists: list[Finalist]
    winner: Finalist | None
    best_config: TrainConfig | None
    files: list[Path]


def _differences(saved: dict[str, Any], wanted: dict[str, Any]) -> str:
    """How a stored study's signature differs from the wanted one, for the refusal's message."""
    objective = [f"{k} {saved['objective'].get(k)!r} -> {v!r}" for k, v in wanted["objective"].items()
                 if saved.get("objective", {}).get(k) != v]
    spaced = [k for k, v in wanted["space"].items() if saved.get("space", {}).get(k) != v]
    return "; ".join(objective + ([f"search space ({', '.join(spaced)})"] if spaced else []))


def open_study(cfg: SearchConfig, storage: Any) -> Any:
    """The study named cfg.study: created (with its signature) when new; an existing one only when it
    was made with the same space and objective. Nothing in an existing study is changed on refusal."""
    import optuna

    wanted = study_signature(cfg)
    where = f"study {cfg.study!r} in {shown_url(storage.url)}"
    try:
        with quiet_optuna():
            study = optuna.create_study(storage=storage, study_name=cfg.study, direction="maximize", load_if_exists=True)
            saved = study.user_attrs.get(STUDY_ATTR)
            if saved is None and study.get_trials(deepcopy=False):
                raise UserError(f"{where} was not made by tinymnist search; pass another --study")
            if study.directions != [optuna.study.StudyDirection.MAXIMIZE]:
                raise UserError(f"{where} does not maximize one value; pass another --study")
            if saved is not None and saved != wanted:
                raise UserError(f"{where} was made with a different search ({_differences(saved, wanted)}); repeat its "
                                "settings to continue it, or pass another --study or --out")
            if saved is None:
                study.set_user_attr(STUDY_ATTR, wanted)
                baseline = baseline_params(cfg)
                if baseline is not None:
                    study.enqueue_trial(baseline, user_attrs={"baseline": True})
    except storage_errors() as exc:
        raise storage_error(storage.url, exc) from None
    return study


def baseline_params(cfg: SearchConfig) -> dict[str, Any] | None:
    """The default model's trial parameters when cfg.baseline asks for it and it fits the budgets: the
    study's first trial, so that every search measures the default beside its candidates."""
    if not cfg.baseline:
        return None
    try:
        params = space.default_params(cfg.space, cfg.mcu)
    except ValueError:
        return None
    plan = space.candidate_from_params(params, cfg.space, cfg.mcu).plan
    fits = budget_reason(space.measure(plan, cfg.build), cfg) is None
    return params if fits else None


def writable_out(out: Path) -> Path:
    """--out, created; UserError when it cannot hold files."""
    if out.exists() and not out.is_dir():
        raise UserError(f"cannot write the search into {out}: it is a file; --out takes a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
        tempfile.NamedTemporaryFile(dir=out, prefix=".tinymnist-probe-").close()
    except OSError as exc:
        raise UserError(f"cannot write into {out}: {exc.strerror or exc}; choose another --out directory") from None
    return out


def prepare(cfg: SearchConfig) -> tuple[Path, Any, Any]:
    """Every check that can refuse the search, before any training: budgets, --out, storage, study."""
    check_reachable(cfg)
    out = writable_out(Path(cfg.out))
    storage = open_storage(storage_url(cfg), cfg.heartbeat)
    study = open_study(cfg, storage)
    return out, storage, study


def run_search(cfg: SearchConfig, progress: bool = False, log: Callable[[str], None] | None = None) -> SearchResult:
    """Run (or continue) the search, re-run the finalists and write trials.csv, best.json, pareto.png
    and search.md into cfg.out."""
    out, storage, study = prepare(cfg)
    if cfg.build is not None and log:
        stale = _cost_model_staleness()
        if stale:
            log(f"warning: {stale}")
    data = load_train_data(cfg.data_dir)
    if cfg.val_size >= len(data.train_labels):
        raise UserError(f"--val-size {cfg.val_size} leaves no training images (there are {len(data.train_labels):,})")
    deadline = time.time() + cfg.timeout if cfg.timeout else None
    monitor = Monitor(cfg, study, progress, log)
    try:
        if cfg.jobs == 1:
            run_worker(cfg, 0, data, deadline, on_trial=monitor)
        else:
            run_workers(cfg, deadline, poll=monitor)
        monitor()
    finally:
        monitor.close()
    with quiet_optuna():
        trials = study.get_trials(deepcopy=False)
    finalists = run_finalists(cfg, trials, data, out, log)
    winner = pick_winner(finalists)
    if cfg.build is not None:
        finalists = check_instructions(finalists, cfg, data.train_images[0], log)
        winner = pick_winner(finalists)
    best = (final_config(space.candidate_from_params(_trial(trials, winner.number).params, cfg.space, cfg.mcu))
            if winner else None)
    files = report.write_outputs(out, cfg, trials, finalists, winner, best, shown_url(storage.url))
    return SearchResult(out, shown_url(storage.url), cfg.study, status_counts(trials), finalists, winner, best, files)


def _cost_model_staleness() -> str | None:
    """A sentence when the instruction cost model was fitted on other kernel sources than these."""
    from tinymnist.export.c import cost

    return cost.load_coefficients().staleness()


def _trial(trials: list[Any], number: int) -> Any:
    """The trial with that number."""
    return next(t for t in trials if t.number == number)
