"""Where a study lives: an Optuna RDB storage (default: SQLite OUT/study.db; PostgreSQL to share a
study between machines), opened with heartbeats so that a trial of a killed process is failed and
retried once. A malformed or unreachable URL is one UserError naming --storage."""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tinymnist.errors import UserError
from tinymnist.search.config import SearchConfig


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


def storage_error(url: str, exc: BaseException) -> UserError:
    """The one-line error for a storage that cannot be used (its URL shown without the password)."""
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
        raise storage_error(given, exc) from None


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
