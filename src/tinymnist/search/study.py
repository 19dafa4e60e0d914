"""`tinymnist search`: an Optuna study for the best network and recipe under parameter, MAC and RAM
budgets, chosen on a validation slice of the training set (the test set is never read).

How it runs:

* Each trial samples a candidate (tinymnist.search.space) and computes its costs from the untrained
  network; one over a budget is rejected before any training (a PRUNED trial with user_attr status
  "rejected" and the reason). TPE (seeded, multivariate) learns the budgets through its
  `constraints_func`, so it stops proposing networks that do not fit.
* A candidate that fits trains for `epochs` epochs on the training set minus its last `val_size`
  images; each epoch's validation accuracy is reported, and a median pruner stops trials that fall
  behind earlier ones. The objective is the last epoch's validation accuracy.
* The study lives in an RDB storage (default: SQLite OUT/study.db). Running the same command again
  continues it: `trials` counts the study's trained trials (complete, pruned or diverged; rejected
  candidates cost milliseconds and do not count), finished ones are never redone, and a trial left
  RUNNING by a killed process stops sending heartbeats, is marked FAIL and retried once with the same
  parameters. Several processes (`jobs`, or other machines on a shared PostgreSQL) share a study; the
  count is checked before each trial, so at most jobs - 1 trials more than asked can finish.
* The top-K complete trials are then re-trained on fresh seeds on the same validation split; the
  winner has the best mean (tinymnist.search.report writes trials.csv, best.json, pareto.png, search.md).
"""

from __future__ import annotations

import contextlib
import json
import math
import multiprocessing
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tinymnist.atomic import write_bytes_atomic
from tinymnist.data.mnist import MNIST
from tinymnist.errors import UserError
from tinymnist.search import report, space
from tinymnist.search.config import Finalist, SearchConfig
from tinymnist.training.config import TrainConfig

FINAL_EPOCHS = 10  # best.json trains the winner for the full 10-epoch recipe
MAX_REJECTED_IN_A_ROW = 1000  # then the budgets are too tight for the sampler to find a network that fits
STUDY_ATTR = "tinymnist_search"  # the study's user_attr holding the space and objective it was made with


# ---------------------------------------------------------------------------------------------
# Budgets


def budget_reason(cost: space.Cost, cfg: SearchConfig) -> str | None:
    """Why a network is over a budget (None when it fits)."""
    if cost.params > cfg.max_params:
        return f"{cost.params:,} parameters > {cfg.max_params:,}"
    if cfg.max_macs is not None and cost.macs > cfg.max_macs:
        return f"{cost.macs:,} MACs > {cfg.max_macs:,}"
    if cfg.max_ram_kb is not None:
        if cost.ram_kb is None:
            return cost.ram_note
        if cost.ram_kb > cfg.max_ram_kb:
            return f"{cost.ram_kb:.1f} KiB int8 RAM > {cfg.max_ram_kb:g}"
    return None


def check_reachable(cfg: SearchConfig) -> None:
    """UserError when no network of the space meets the budgets (checked on its smallest plans)."""
    costs = {plan: space.measure(plan) for plan in space.smallest_plans()}
    if any(budget_reason(cost, cfg) is None for cost in costs.values()):
        return
    fewest = {
        "--max-params": (cfg.max_params, min(costs.items(), key=lambda kv: kv[1].params), "parameters", "params"),
        "--max-macs": (cfg.max_macs, min(costs.items(), key=lambda kv: kv[1].macs), "MACs", "macs"),
        "--max-ram-kb": (cfg.max_ram_kb, min(costs.items(), key=lambda kv: kv[1].ram_bytes or math.inf),
                         "KiB of int8 RAM", "ram_kb"),
    }
    for flag, (limit, (plan, cost), unit, attr) in fewest.items():
        value = getattr(cost, attr)
        if limit is not None and (value is None or value > limit):
            shown = f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"
            raise UserError(f"no network of the search space meets {flag} {limit:g}: the smallest, {plan!r}, has "
                            f"{shown} {unit}; raise {flag}")
    raise UserError("no network of the search space meets all the budgets at once; raise one of them")


def constraints(cfg: SearchConfig, trial: Any) -> list[float]:
    """TPE's constraints (feasible when all <= 0): each cost relative to its budget, minus 1."""
    attrs = trial.user_attrs
    params, macs, ram = attrs.get("params"), attrs.get("macs"), attrs.get("ram_kb")
    if params is None:
        return [0.0, 0.0, 0.0]
    return [params / cfg.max_params - 1,
            macs / cfg.max_macs - 1 if cfg.max_macs else -1.0,
            (1.0 if ram is None else ram / cfg.max_ram_kb - 1) if cfg.max_ram_kb else -1.0]


# ---------------------------------------------------------------------------------------------
# Storage and study


def storage_url(cfg: SearchConfig) -> str:
    """--storage, else an SQLite file in --out."""
    return cfg.storage or f"sqlite:///{(Path(cfg.out).resolve() / 'study.db').as_posix()}"


def shown_url(url: str) -> str:
    """The URL with any password hidden (for messages and reports)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - a malformed URL is shown as given
        return url


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's experimental/deprecation warnings (heartbeats, grouped TPE) and its per-trial logs off
    (a failed trial's exception still propagates, with its traceback when it is a bug)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.simplefilter("ignore", FutureWarning)
        yield


def _storage_error(url: str, exc: BaseException) -> UserError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, ImportError):
        cause = exc.__cause__ if isinstance(exc.__cause__, ImportError) else exc
        first = f"its database driver is not installed ({cause}); for PostgreSQL: pip install 'tinymnist[postgres]'"
    return UserError(f"cannot use the study storage {shown_url(url)}: {first}; check --storage")


def storage_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean the storage is unusable (not a bug)."""
    import optuna
    import sqlalchemy.exc

    return (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError, ImportError, ValueError)


def open_storage(url: str, heartbeat: int) -> Any:
    """An RDBStorage with heartbeats: a trial whose process died turns FAIL after 3 heartbeats and is
    retried once. UserError for a malformed or unreachable URL."""
    import optuna
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    given = url
    try:
        parsed = make_url(url)
        engine_kwargs: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            engine_kwargs = {"connect_args": {"timeout": 60}}  # wait for another worker's write lock
        elif parsed.get_backend_name() == "postgresql":
            url = _postgres_driver(parsed)
            if make_url(url).get_driver_name() in ("psycopg2", "psycopg"):
                engine_kwargs = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
        with quiet_optuna():
            for attempt in range(5):
                try:
                    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat,
                                                      grace_period=3 * heartbeat, **_retry_callback())
                except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
                    # Two processes creating the tables of a new database at once: the loser finds them made.
                    if attempt == 4:
                        raise
                    time.sleep(0.5 * (attempt + 1))
    except storage_errors() as exc:
        raise _storage_error(given, exc) from None


def _postgres_driver(parsed: Any) -> str:
    """A postgresql:// URL that names no driver gets the one installed: SQLAlchemy 2.1 defaults to
    psycopg 3, 2.0 to psycopg2 (tinymnist[postgres] installs psycopg2-binary)."""
    import importlib.util

    if parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        parsed = parsed.set(drivername="postgresql+psycopg2")
    return parsed.render_as_string(hide_password=False)


def _retry_callback() -> dict[str, Any]:
    """Retry a stale trial once (optuna 5 renamed the callback and its keyword)."""
    import optuna.storages as storages

    if hasattr(storages, "RetryHeartbeatStaleTrialCallback"):
        return {"heartbeat_stale_trial_callback": storages.RetryHeartbeatStaleTrialCallback(max_retry=1)}
    return {"failed_trial_callback": storages.RetryFailedTrialCallback(max_retry=1)}


def objective_settings(cfg: SearchConfig) -> dict[str, Any]:
    """What the trials' scores depend on besides the space: a study is continued only with the same."""
    return {"epochs": cfg.epochs, "val_size": cfg.val_size, "train_subset": cfg.train_subset, "seed": cfg.seed,
            "max_params": cfg.max_params, "max_macs": cfg.max_macs, "max_ram_kb": cfg.max_ram_kb,
            "metric": "validation accuracy at the last epoch"}


def study_signature(cfg: SearchConfig) -> dict[str, Any]:
    """The space and objective a study is made with (JSON round-tripped, as the storage returns it)."""
    return json.loads(json.dumps({"space": space.describe(cfg.space), "objective": objective_settings(cfg)}))


def _differences(saved: dict[str, Any], wanted: dict[str, Any]) -> str:
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
        raise _storage_error(storage.url, exc) from None
    return study


def baseline_params(cfg: SearchConfig) -> dict[str, Any] | None:
    """The default model's trial parameters when cfg.baseline asks for it and it fits the budgets: the
    study's first trial, so that every search measures the default beside its candidates."""
    if not cfg.baseline:
        return None
    try:
        params = space.default_params(cfg.space)
    except ValueError:
        return None
    fits = budget_reason(space.measure(space.candidate_from_params(params, cfg.space).plan), cfg) is None
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


# ---------------------------------------------------------------------------------------------
# Data and configs


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
    return TrainConfig(model=space.MODEL, model_args=space.model_args(candidate.plan), epochs=cfg.epochs, seed=seed,
                       val_size=cfg.val_size, train_subset=cfg.train_subset, test_subset=1, threads=threads,
                       **space.recipe_fields(candidate.knobs))


def final_config(candidate: space.Candidate) -> TrainConfig:
    """best.json: the searched network and knobs at the full recipe's length (10 epochs), on all
    60,000 training images (no validation hold-out), seed 0, every core: `tinymnist train --config`."""
    return TrainConfig(model=space.MODEL, model_args=space.model_args(candidate.plan), epochs=FINAL_EPOCHS,
                       **space.recipe_fields(candidate.knobs))


# ---------------------------------------------------------------------------------------------
# The objective


class Objective:
    """One trial: sample, measure, reject over budget, else train with per-epoch reports and pruning."""

    def __init__(self, cfg: SearchConfig, data: MNIST, threads: int = 0):
        self.cfg, self.data, self.threads = cfg, data, threads

    def __call__(self, trial: Any) -> float:
        import optuna

        trial.set_user_attr("status", "sampling")
        trial.set_user_attr("reason", "")
        candidate = space.sample(trial, self.cfg.space)
        cost = space.measure(candidate.plan)
        for key, value in (("plan", candidate.plan), ("params", cost.params), ("macs", cost.macs),
                           ("ram_kb", None if cost.ram_kb is None else round(cost.ram_kb, 2))):
            trial.set_user_attr(key, value)
        reason = budget_reason(cost, self.cfg)
        if reason:
            trial.set_user_attr("status", "rejected")
            trial.set_user_attr("reason", f"over budget: {reason}")
            raise optuna.TrialPruned(reason)
        trial.set_user_attr("status", "training")
        return self._train(trial, candidate)

    def _train(self, trial: Any, candidate: space.Candidate) -> float:
        import optuna

        from tinymnist.training.trainer import Diverged, train_run

        cfg = trial_config(candidate, self.cfg, self.cfg.seed, self.threads)
        history: list[float] = []
        started = time.perf_counter()

        def on_epoch(record: dict[str, Any]) -> None:
            history.append(float(record["val_accuracy"]))  # never record["test_*"]: a stand-in
            trial.report(history[-1], record["epoch"])
            if record["epoch"] < cfg.epochs and trial.should_prune():
                raise optuna.TrialPruned(f"stopped after epoch {record['epoch']}")

        def finish(status: str, reason: str = "") -> None:
            trial.set_user_attr("status", status)
            trial.set_user_attr("reason", reason)
            trial.set_user_attr("val_history", [round(v, 4) for v in history])
            trial.set_user_attr("seconds", round(time.perf_counter() - started, 2))

        try:
            train_run(cfg, self.data, on_epoch=on_epoch)
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


# ---------------------------------------------------------------------------------------------
# Workers


def make_sampler(cfg: SearchConfig, worker: int, history: int) -> Any:
    """TPE, seeded by the search seed, the worker and the study's length (a continued study or a
    second worker does not replay the first one's random start)."""
    import functools

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
    done = sum(report.trial_status(t) in report.TRAINED for t in trials)
    running = sum(report.trial_status(t) == "training" for t in trials)
    return done, running


def run_worker(cfg: SearchConfig, worker: int = 0, data: MNIST | None = None, deadline: float | None = None,
               on_trial: Callable[[Any], None] | None = None, threads: int = 0) -> None:
    """Run trials on the shared study until it holds cfg.trials trained trials (waiting for other
    processes' running ones to finish) or the deadline (time.time()) passes."""
    import optuna

    storage = open_storage(storage_url(cfg), cfg.heartbeat)
    data = data if data is not None else load_train_data(cfg.data_dir)
    objective = Objective(cfg, data, threads)
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
            study.optimize(objective, n_trials=1, callbacks=[lambda _s, t: finished.append(t)])
            rejected_in_a_row = rejected_in_a_row + 1 if finished and report.trial_status(finished[0]) == "rejected" else 0
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


# ---------------------------------------------------------------------------------------------
# Finalists


def top_trials(trials: list[Any], k: int) -> list[Any]:
    """The k complete trials with the best validation accuracy (fewer parameters first on ties)."""
    complete = [t for t in trials if report.trial_status(t) == "complete"]
    return sorted(complete, key=lambda t: (-t.value, t.user_attrs["params"], t.number))[:k]


def fresh_seeds(cfg: SearchConfig) -> list[int]:
    """Seeds no trial trained with."""
    return [cfg.seed + 1 + i for i in range(cfg.final_seeds)]


def _read_cache(path: Path, key: dict[str, Any]) -> dict[str, float]:
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
        candidate = space.candidate_from_params(trial.params, cfg.space)
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
                                  float(trial.value), fresh_seeds(cfg), accuracies))
    return finalists


def pick_winner(finalists: list[Finalist]) -> Finalist | None:
    """The best mean over fresh seeds; ties: the better worst seed, then fewer parameters."""
    return min(finalists, key=lambda f: (-f.mean, -f.worst, f.params), default=None)


# ---------------------------------------------------------------------------------------------
# The whole search


@dataclass(frozen=True)
class SearchResult:
    out: Path
    storage: str  # password hidden
    study: str
    counts: dict[str, int]  # trials by status
    finalists: list[Finalist]
    winner: Finalist | None
    best_config: TrainConfig | None
    files: list[Path]


class Monitor:
    """Progress while trials run: a tqdm bar (trained trials, best so far) and one line per trained trial."""

    def __init__(self, cfg: SearchConfig, study: Any, bar: bool, log: Callable[[str], None] | None):
        self.cfg, self.study, self.log = cfg, study, log
        trials = study.get_trials(deepcopy=False)
        self.seen = {t.number for t in trials if t.state.is_finished()}
        self.bar = None
        if bar:
            from tqdm import tqdm

            done = sum(report.trial_status(t) in report.TRAINED for t in trials)
            self.bar = tqdm(total=cfg.trials, initial=min(done, cfg.trials), desc="search", unit="trial",
                            file=sys.stderr, dynamic_ncols=True)
            self._postfix(trials)

    def _postfix(self, trials: list[Any]) -> None:
        if self.bar is None:
            return
        values = [t.value for t in trials if report.trial_status(t) == "complete"]
        rejected = sum(report.trial_status(t) == "rejected" for t in trials)
        self.bar.set_postfix_str(f"best {max(values):.2f}%, {rejected} rejected" if values else f"{rejected} rejected")

    def __call__(self, *_: Any) -> None:
        trials = self.study.get_trials(deepcopy=False)
        for t in trials:
            if t.number in self.seen or not t.state.is_finished():
                continue
            self.seen.add(t.number)
            if report.trial_status(t) in report.TRAINED and self.log:
                line = report.trial_line(t)
                if self.bar is not None:
                    self.bar.write(line, file=sys.stdout)
                else:
                    self.log(line)
        if self.bar is not None:
            done = sum(report.trial_status(t) in report.TRAINED for t in trials)
            self.bar.n = min(done, self.cfg.trials)
            self._postfix(trials)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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
    best = (final_config(space.candidate_from_params(_trial(trials, winner.number).params, cfg.space)) if winner
            else None)
    files = report.write_outputs(out, cfg, trials, finalists, winner, best, shown_url(storage.url))
    return SearchResult(out, shown_url(storage.url), cfg.study, report.status_counts(trials), finalists, winner, best, files)


def _trial(trials: list[Any], number: int) -> Any:
    return next(t for t in trials if t.number == number)
