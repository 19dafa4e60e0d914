"""The processes that run trials on a shared study: one in the calling process (jobs=1) or `jobs`
spawned ones, each with its own seeded TPE sampler (constrained by the budgets) and a median pruner.
Several workers (and other machines on a shared PostgreSQL) share the study; the count of trained
trials is checked before each trial, so at most jobs - 1 trials more than asked can finish."""

from __future__ import annotations

import functools
import multiprocessing
import sys
import time
from collections.abc import Callable
from typing import Any

from tinymnist.data.mnist import MNIST
from tinymnist.errors import UserError
from tinymnist.search.budgets import constraints
from tinymnist.search.config import SearchConfig
from tinymnist.search.objective import load_train_data, objective
from tinymnist.search.storage import open_storage, quiet_optuna, storage_url
from tinymnist.search.trials import TRAINED, trial_status

MAX_REJECTED_IN_A_ROW = 1000  # then the budgets are too tight for the sampler to find a network that fits


def make_sampler(cfg: SearchConfig, worker: int, history: int) -> Any:
    """TPE, seeded by the search seed, the worker and the study's length (a continued study or a
    second worker does not replay the first one's random start)."""
    import optuna

    seed = (cfg.seed * 1_000_003 + worker * 10_007 + history) % 2**31
    with quiet_optuna():
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True,
                                          n_startup_trials=10, constraints_func=functools.partial(constraints, cfg))


def make_pruner() -> Any:
    """Median pruning from the first epoch on, once 5 trials have completed (never at the last epoch)."""
    import optuna

    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)


def _standing(study: Any) -> tuple[int, int]:
    """(trained trials finished, trials training now) in the study."""
    trials = study.get_trials(deepcopy=False)
    done = sum(trial_status(t) in TRAINED for t in trials)
    running = sum(trial_status(t) == "training" for t in trials)
    return done, running


def run_worker(cfg: SearchConfig, worker: int = 0, data: MNIST | None = None, deadline: float | None = None,
               on_trial: Callable[[Any], None] | None = None, threads: int = 0) -> None:
    """Run trials on the shared study until it holds cfg.trials trained trials (waiting for other
    processes' running ones to finish) or the deadline (time.time()) passes."""
    import optuna

    storage = open_storage(storage_url(cfg), cfg.heartbeat)
    data = data if data is not None else load_train_data(cfg.data_dir)
    with quiet_optuna():
        history = len(optuna.load_study(study_name=cfg.study, storage=storage).get_trials(deepcopy=False))
        study = optuna.load_study(study_name=cfg.study, storage=storage, sampler=make_sampler(cfg, worker, history),
                                  pruner=make_pruner())
        rejected_in_a_row = 0
        finished: list[Any] = []
        while deadline is None or time.time() < deadline:
            optuna.storages.fail_stale_trials(study)
            done, running = _standing(study)
            if done >= cfg.trials:
                return
            if done + running >= cfg.trials:  # others are training the rest: wait for them (or their heartbeats to stop)
                time.sleep(min(2.0, cfg.heartbeat))
                continue
            finished.clear()
            study.optimize(lambda trial: objective(trial, cfg, data, threads), n_trials=1,
                           callbacks=[lambda _s, t: finished.append(t)])
            rejected_in_a_row = rejected_in_a_row + 1 if finished and trial_status(finished[0]) == "rejected" else 0
            if on_trial:
                on_trial(study)
            if rejected_in_a_row >= MAX_REJECTED_IN_A_ROW:
                raise UserError(f"{rejected_in_a_row} candidates in a row were over the budgets; raise --max-params, "
                                "--max-macs or --max-ram-kb")


def _worker_main(cfg: SearchConfig, worker: int, deadline: float | None) -> None:
    """A spawned worker process: one torch thread, its own copy of the training data."""
    import torch

    torch.set_num_threads(1)
    try:
        run_worker(cfg, worker, deadline=deadline, threads=1)
    except UserError as exc:
        print(f"tinymnist: error: search worker {worker}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def run_workers(cfg: SearchConfig, deadline: float | None, poll: Callable[[], None]) -> None:
    """cfg.jobs spawned worker processes on the study; `poll` is called about every second."""
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_worker_main, args=(cfg, i, deadline), name=f"tinymnist-search-{i}")
             for i in range(cfg.jobs)]
    for p in procs:
        p.start()
    try:
        while any(p.is_alive() for p in procs):
            procs[0].join(timeout=1.0)
            poll()
    except KeyboardInterrupt:
        for p in procs:  # they got the Ctrl-C too: their running trials are marked FAIL as they stop
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
        raise
    failed = [str(i) for i, p in enumerate(procs) if p.exitcode != 0]
    if failed:
        raise UserError(f"search worker {', '.join(failed)} stopped with an error (above); the study keeps every "
                        "finished trial: run the same command again to continue")
