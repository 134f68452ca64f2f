"""The MLflow tracking store, used safely from many processes.

- First use of a fresh sqlite store runs MLflow's schema migration; two runs doing it at
  once race in ``alembic_version`` and one dies. ``first_use_lock`` serializes that step
  (and experiment creation) with an ``flock`` on ``<db>.lock`` beside the database.
- A write that finds the database locked beyond MLflow's own timeout is retried with
  backoff, then ends as one ``TrackingError`` line; other store failures become one
  ``TrackingError`` line as well. No raw tracking-store traceback reaches the user.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from polylora.errors import PolyloraError

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRIES = 6  # attempts of a write that found the database locked
BACKOFF_S = 0.5  # first wait; doubles each time
LOCK_TIMEOUT_S = 600.0


class TrackingError(PolyloraError):
    """The tracking store could not be used (locked too long, unreachable, corrupt)."""


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


@contextmanager
def first_use_lock(uri: str) -> Iterator[None]:
    """Hold ``<db>.lock`` (sqlite stores only) while the store is created or migrated."""
    path = sqlite_path(uri)
    if path is None:
        yield
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise TrackingError(
            f"cannot create the MLflow store {uri}: {exc.strerror or exc} ({path.parent}); "
            "set tracking.uri to a writable place"
        ) from None
    try:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TrackingError(
                        f"{path}.lock was held for {LOCK_TIMEOUT_S:.0f}s by another process "
                        "creating the MLflow store; check for a hung run, then retry"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


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
