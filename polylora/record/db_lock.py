"""One named lock that every process using a database agrees on, on any machine.

- sqlite (one machine, or one shared disk): an ``flock`` on ``<db>.lock`` beside the file.
- PostgreSQL: a session advisory lock (``pg_advisory_lock``) keyed by the lock's name.
- MySQL / MariaDB: ``GET_LOCK`` on the lock's name.
- any other database SQLAlchemy reaches: a row of the table ``polylora_locks`` held with
  ``SELECT ... FOR UPDATE`` in an open transaction.

A server-side lock lives on its own connection, so it dies with the process that holds it: a
killed worker never leaves a lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from polylora.errors import PolyloraError
from polylora.record.redaction import redact_text

LOCK_TIMEOUT_S = 600.0
LOCK_TABLE = "polylora_locks"


class DatabaseLockError(PolyloraError):
    """A database lock could not be taken (held too long, database unreachable)."""


def sqlite_path(url: str) -> Path | None:
    """The database file of a ``sqlite:///`` URL, else None (in-memory or not sqlite)."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def is_database_url(url: Any) -> bool:
    """Whether ``url`` is an SQLAlchemy database URL (not an HTTP server, not a folder)."""
    if not isinstance(url, str) or "://" not in url:
        return False
    scheme = url.split("://", 1)[0].lower()
    return scheme not in ("http", "https", "file", "databricks") and not scheme.startswith(
        ("databricks", "uc"))


def dialect(url: str) -> str:
    """The database kind of an SQLAlchemy URL: ``postgresql``, ``mysql``, ``sqlite``, ..."""
    return url.split("://", 1)[0].split("+", 1)[0].lower()


def driver_problem(url: str) -> str | None:
    """Why ``url`` cannot be opened for want of a database driver (with the fix), else None."""
    if not is_database_url(url):
        return None
    scheme = url.split("://", 1)[0].lower()
    if (scheme in ("postgresql", "postgres", "postgresql+psycopg2")
            and importlib.util.find_spec("psycopg2") is None):
        return (f"{scheme}:// needs the psycopg2 driver, which polylora does not install: "
                "write postgresql+psycopg://... (psycopg 3, pip install 'polylora[cluster]')")
    if scheme == "postgresql+psycopg" and importlib.util.find_spec("psycopg") is None:
        return ("postgresql+psycopg:// needs psycopg 3: pip install 'polylora[cluster]'")
    return None


def masked(url: str) -> str:
    """``url`` with any password hidden (for messages and logs)."""
    return redact_text(url)


def _key(name: str) -> int:
    """A signed 64-bit advisory-lock key for ``name`` (the same in every process)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def database_lock(url: str, name: str, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the lock ``name`` of the database at ``url`` (a no-op for what is no database:
    an HTTP server serializes its own writes, an in-memory store has one user)."""
    path = sqlite_path(url) if isinstance(url, str) else None
    if path is not None:
        with file_lock(path, timeout_s):
            yield
        return
    if not is_database_url(url) or url.startswith("sqlite:"):
        yield
        return
    kind = dialect(url)
    lock = {"postgresql": _advisory_lock, "mysql": _mysql_lock, "mariadb": _mysql_lock}.get(
        kind, row_lock)
    with lock(url, name, timeout_s):
        yield


@contextmanager
def file_lock(db: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold ``<db>.lock`` (created beside the database file) with ``flock``."""
    try:
        db.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{db}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise DatabaseLockError(
            f"cannot create the lock file {db}.lock: {exc.strerror or exc}; put the database "
            "in a writable place") from None
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise DatabaseLockError(
                        f"{db}.lock was held for {timeout_s:.0f}s by another process; check "
                        "for a hung run, then retry") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # releases the lock


def _engine(url: str) -> Any:
    """An engine with no pool: the lock's connection closes (and frees it) on exit."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    problem = driver_problem(url)
    if problem is not None:
        raise DatabaseLockError(problem)
    return create_engine(url, poolclass=NullPool)


def _failed(url: str, name: str, exc: BaseException) -> DatabaseLockError:
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return DatabaseLockError(f"cannot take the lock {name!r} in {masked(url)}: "
                             f"{type(exc).__name__}: {redact_text(first)}")


@contextmanager
def _advisory_lock(url: str, name: str, timeout_s: float) -> Iterator[None]:
    from sqlalchemy import text

    engine = _engine(url)
    try:
        try:
            conn = engine.connect()
        except Exception as exc:
            raise _failed(url, name, exc) from None
        try:
            conn.execute(text(f"SET lock_timeout = {int(timeout_s * 1000)}"))
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _key(name)})
            conn.commit()
        except Exception as exc:
            conn.close()
            raise _failed(url, name, exc) from None
        try:
            yield
        finally:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _key(name)})
                conn.commit()
            finally:
                conn.close()
    finally:
        engine.dispose()


@contextmanager
def _mysql_lock(url: str, name: str, timeout_s: float) -> Iterator[None]:
    from sqlalchemy import text

    lock_name = "polylora-" + hashlib.sha256(name.encode()).hexdigest()[:40]
    engine = _engine(url)
    try:
        with engine.connect() as conn:
            try:
                got = conn.execute(text("SELECT GET_LOCK(:n, :t)"),
                                   {"n": lock_name, "t": int(timeout_s)}).scalar()
            except Exception as exc:
                raise _failed(url, name, exc) from None
            if got != 1:
                raise DatabaseLockError(f"the lock {name!r} in {masked(url)} was held for "
                                        f"{timeout_s:.0f}s by another process; retry")
            try:
                yield
            finally:
                conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": lock_name})
    finally:
        engine.dispose()


@contextmanager
def row_lock(url: str, name: str, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """The portable lock: the row ``name`` of ``polylora_locks``, ``SELECT ... FOR UPDATE``
    in a transaction kept open while the lock is held."""
    from sqlalchemy import Column, MetaData, String, Table, select
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    table = Table(LOCK_TABLE, MetaData(), Column("name", String(255), primary_key=True))
    engine = _engine(url)
    try:
        try:
            # another process may create it between the check and the create
            with contextlib.suppress(OperationalError, ProgrammingError, IntegrityError):
                table.create(engine, checkfirst=True)
            try:
                with engine.begin() as conn:
                    conn.execute(table.insert().values(name=name))
            except IntegrityError:
                pass  # the row exists
        except Exception as exc:
            raise _failed(url, name, exc) from None
        try:
            conn = engine.connect()
        except Exception as exc:
            raise _failed(url, name, exc) from None
        try:
            conn.execute(select(table.c.name).where(table.c.name == name).with_for_update())
        except Exception as exc:
            conn.close()
            raise _failed(url, name, exc) from None
        try:
            yield
        finally:
            conn.rollback()
            conn.close()
    finally:
        engine.dispose()
