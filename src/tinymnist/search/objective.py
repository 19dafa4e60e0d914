"""One trial, as a plain function of an Optuna trial: sample a candidate, measure its costs on the
untrained network, reject it over a budget (PRUNED, user_attr status "rejected", before any
training), else train it on the training set minus its last `val_size` images, reporting each
epoch's validation accuracy so that the pruner can stop it. The score is the last epoch's validation
accuracy; the test set is never read."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tinymnist.data.mnist import MNIST
from tinymnist.search import space
from tinymnist.search.budgets import budget_reason
from tinymnist.search.config import SearchConfig
from tinymnist.training.config import TrainConfig


def load_train_data(data_dir: str | Path | None = None) -> MNIST:
    """The training images and labels only: the test files are never opened. `train_run` always
    evaluates a "test" split, so the returned MNIST holds a stand-in there: the last training image,
    which lies in the validation slice (its numbers are dropped, never recorded)."""
    from tinymnist.data.mnist import load_split

    images, labels = load_split("train", data_dir)
    return MNIST(images, labels, images[-1:], labels[-1:])


def trial_config(candidate: space.Candidate, cfg: SearchConfig, seed: int, threads: int = 0) -> TrainConfig:
    """The TrainConfig a trial (or a finalist re-run) trains: the search's length and validation split,
    one stand-in "test" image (see load_train_data)."""
    # Built directly, so no model's recipe applies: a candidate is a new network that only borrows
    # space.MODEL's class, and the space's knobs (TrainConfig's defaults for the rest) are its recipe.
    return TrainConfig(model=space.MODEL, model_args=space.model_args(candidate.plan), epochs=cfg.epochs, seed=seed,
                       val_size=cfg.val_size, train_subset=cfg.train_subset, test_subset=1, threads=threads,
                       **space.recipe_fields(candidate.knobs))


def objective(trial: Any, cfg: SearchConfig, data: MNIST, threads: int = 0) -> float:
    """One trial: sample, measure, reject over budget, else train with per-epoch reports and pruning."""
    import optuna

    trial.set_user_attr("status", "sampling")
    trial.set_user_attr("reason", "")
    candidate = space.sample(trial, cfg.space, cfg.mcu)
    cost = space.measure(candidate.plan, cfg.build)
    for key, value in (("plan", candidate.plan), ("params", cost.params), ("macs", cost.macs),
                       ("ram_kb", None if cost.ram_kb is None else round(cost.ram_kb, 2))):
        trial.set_user_attr(key, value)
    if cfg.build is not None:
        trial.set_user_attr("instructions", cost.instructions)
    reason = budget_reason(cost, cfg)
    if reason:
        trial.set_user_attr("status", "rejected")
        trial.set_user_attr("reason", f"over budget: {reason}")
        raise optuna.TrialPruned(reason)
    trial.set_user_attr("status", "training")
    return _train(trial, candidate, cfg, data, threads)


def _train(trial: Any, candidate: space.Candidate, cfg: SearchConfig, data: MNIST, threads: int) -> float:
    """Train a candidate that fits; its status, history and time go into the trial's user_attrs."""
    import optuna

    # Imported here, not above: the search's tests replace trainer.train_run to watch what is trained.
    from tinymnist.training.trainer import Diverged, train_run

    train_cfg = trial_config(candidate, cfg, cfg.seed, threads)
    history: list[float] = []
    started = time.perf_counter()

    def on_epoch(record: dict[str, Any]) -> None:
        history.append(float(record["val_accuracy"]))  # never record["test_*"]: a stand-in
        trial.report(history[-1], record["epoch"])
        if record["epoch"] < train_cfg.epochs and trial.should_prune():
            raise optuna.TrialPruned(f"stopped after epoch {record['epoch']}")

    def finish(status: str, reason: str = "") -> None:
        trial.set_user_attr("status", status)
        trial.set_user_attr("reason", reason)
        trial.set_user_attr("val_history", [round(v, 4) for v in history])
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 2))

    try:
        train_run(train_cfg, data, on_epoch=on_epoch)
    except optuna.TrialPruned:
        finish("pruned", f"stopped after epoch {len(history)} of {cfg.epochs}: validation {history[-1]:.2f}% "
                         "below the median of earlier trials")
        raise
    except Diverged as exc:
        finish("diverged", str(exc).split(";")[0])
        raise optuna.TrialPruned("diverged") from None
    finish("complete")
    trial.set_user_attr("val_accuracy", history[-1])
    return history[-1]
