"""The MLflow tracking store, used safely from many processes.

- First use of a fresh store runs MLflow's schema migration; two processes doing it at
  once race in ``alembic_version`` and one dies. ``first_use_lock`` serializes that step
  (and experiment creation): an ``flock`` on ``<db>.lock`` beside a sqlite database, a
  database lock on a server database (``polylora.record.db_lock``). Runs and sweeps both take it.
- A write that finds the database locked beyond MLflow's own timeout is retried with
  backoff, then ends as one ``TrackingError`` line; other store failures become one
  ``TrackingError`` line as well. No raw tracking-store traceback reaches the user.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

from polylora.errors import PolyloraError
from polylora.record import db_lock

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRIES = 6  # attempts of a write that found the database locked
BACKOFF_S = 0.5  # first wait; doubles each time
LOCK_TIMEOUT_S = 600.0


class TrackingError(PolyloraError):
    """The tracking store could not be used (locked too long, unreachable, corrupt)."""


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    return db_lock.sqlite_path(uri)


#: The name of the lock every process takes before it first opens an MLflow store.
FIRST_USE_LOCK = "polylora-mlflow-first-use"


@contextmanager
def first_use_lock(uri: str) -> Iterator[None]:
    """Hold the store's first-use lock while it is created or migrated and while experiments
    are created: ``<db>.lock`` for sqlite, a database lock for a server database (see
    ``polylora.record.db_lock``); nothing for an HTTP server, which serializes its own writes."""
    path = sqlite_path(uri)
    with ExitStack() as stack:
        try:
            stack.enter_context(db_lock.database_lock(uri, FIRST_USE_LOCK, LOCK_TIMEOUT_S))
        except db_lock.DatabaseLockError as exc:
            where = f" ({path.parent})" if path is not None else ""
            raise TrackingError(
                f"cannot create the MLflow store {db_lock.masked(uri)}{where}: {exc}; "
                "set tracking.uri to a writable place or a reachable database"
            ) from None
        yield


def sqlite_schema(path: Path) -> tuple[str, str]:
    """(the schema revision of the MLflow sqlite store at ``path``, this MLflow's latest): equal
    when the store needs no ``mlflow db upgrade``. Raises ``sqlite3.Error`` / ``TypeError`` when
    the file is not an MLflow store. Reads only (the file is opened read-only)."""
    from mlflow.store.db.utils import _get_latest_schema_revision  # MLflow exposes no other

    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(version), str(_get_latest_schema_revision())


def is_server(uri: str) -> bool:
    """Whether ``uri`` is an MLflow tracking server (HTTP), not a database or folder."""
    return uri.startswith(("http://", "https://"))


def check_artifact_location(uri: str, experiment: str, location: str | None) -> None:
    """Refuse an experiment on a tracking server whose artifacts go to a local path (an
    experiment first created against a sqlite or file store keeps ``file:`` for ever), so no
    worker writes artifacts to its own disk where nobody else can read them."""
    if not is_server(uri) or not location:
        return
    scheme = location.split(":", 1)[0] if ":" in location.split("/", 1)[0] else ""
    if scheme not in ("", "file"):
        return
    raise TrackingError(
        f"the MLflow experiment {experiment!r} on {db_lock.masked(uri)} keeps its artifacts at "
        f"{location}, a path on whichever machine logs them (it was created against a local "
        "store); log to a new experiment (tracking.experiment=NAME), which the server creates "
        "with proxied artifacts (mlflow-artifacts:/), or move the runs with mlflow's "
        "export tools"
    )


def _is_locked(exc: BaseException) -> bool:
    return "database is locked" in str(exc) or "database table is locked" in str(exc)


def _one_line(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    return lines[0][:300] if lines else type(exc).__name__


def call(what: str, uri: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` against the store: retried while the database is locked; any
    store failure becomes one ``TrackingError`` line naming ``what`` and the store."""
    wait = BACKOFF_S
    for attempt in range(1, RETRIES + 1):
        try:
            return fn(*args, **kwargs)
        except PolyloraError:
            raise
        except Exception as exc:  # MlflowException, SQLAlchemy errors, OSError, ...
            if _is_locked(exc) and attempt < RETRIES:
                log.warning("MLflow store %s is locked (%s): retrying in %.1fs", uri, what, wait)
                time.sleep(wait)
                wait *= 2
                continue
            if _is_locked(exc):
                raise TrackingError(
                    f"the MLflow store {uri} stayed locked while trying to {what} "
                    f"({RETRIES} tries); another process holds a long write: retry, or use an "
                    "MLflow server (tracking.uri=http://...) for many parallel runs"
                ) from None
            raise TrackingError(
                f"the MLflow store {uri} failed to {what}: {type(exc).__name__}: {_one_line(exc)}"
            ) from None
    raise AssertionError("unreachable")
