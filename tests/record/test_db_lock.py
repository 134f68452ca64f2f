"""Database locks: mutual exclusion on a real PostgreSQL server (advisory lock and the
portable row lock) and on sqlite (file lock), release when the holder is killed, a timeout as
one line without the password, and the missing-driver message."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from helpers import REPO

from polylora.record import db_lock


def _count_under(lock: Callable[[], AbstractContextManager[None]]) -> int:
    """4 threads × 10 read-sleep-write increments of a shared counter, each under ``lock``
    (every call opens its own connection or file descriptor); returns the final count (40
    only if no two increments overlapped)."""
    counter = [0]
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                with lock():
                    value = counter[0]
                    time.sleep(0.002)  # widen the window a lost update needs
                    counter[0] = value + 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return counter[0]


def test_postgres_advisory_lock_excludes_other_holders(pg_url: str) -> None:
    assert _count_under(lambda: db_lock.database_lock(pg_url, "count")) == 40


def test_portable_row_lock_excludes_other_holders(pg_url: str) -> None:
    assert _count_under(lambda: db_lock.row_lock(pg_url, "count")) == 40


def test_sqlite_file_lock_excludes_other_holders(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'study.db'}"
    assert _count_under(lambda: db_lock.database_lock(url, "count")) == 40
    assert (tmp_path / "study.db.lock").exists()


def test_without_the_lock_updates_are_lost() -> None:
    """The counter above can fail: with a lock that excludes nothing, increments get lost."""
    from contextlib import nullcontext

    assert _count_under(nullcontext) < 40


def test_a_held_lock_times_out_as_one_line_without_the_password(pg_url: str) -> None:
    secret_url = pg_url.replace("polylora@", "polylora:hunter2secret@")  # trust auth ignores it
    with (db_lock.database_lock(pg_url, "busy"),
          pytest.raises(db_lock.DatabaseLockError) as err,
          db_lock.database_lock(secret_url, "busy", timeout_s=0.5)):
        pass
    message = str(err.value)
    assert "busy" in message and "\n" not in message
    assert "hunter2secret" not in message
    with db_lock.database_lock(secret_url, "other", timeout_s=0.5):  # another name is free
        pass


def test_a_killed_holder_leaves_no_lock_behind(pg_url: str, tmp_path: Path) -> None:
    held = tmp_path / "held"
    code = ("import sys, time, pathlib\nfrom polylora.record import db_lock\n"
            "with db_lock.database_lock(sys.argv[1], 'ask'):\n"
            "    pathlib.Path(sys.argv[2]).write_text('x')\n    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, pg_url, str(held)],
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 60
        while not held.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert held.exists(), "the holder never took the lock"
        with (pytest.raises(db_lock.DatabaseLockError),
              db_lock.database_lock(pg_url, "ask", timeout_s=0.3)):
            pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    with db_lock.database_lock(pg_url, "ask", timeout_s=30):  # the server freed it
        pass


def test_plain_postgresql_url_names_the_driver_to_use() -> None:
    problem = db_lock.driver_problem("postgresql://u@db/optuna")
    if problem is None:
        pytest.skip("psycopg2 is installed here, so postgresql:// works as written")
    assert "postgresql+psycopg://" in problem and "polylora[cluster]" in problem
    assert db_lock.driver_problem("postgresql+psycopg://u@db/optuna") is None
    assert db_lock.driver_problem("sqlite:///x.db") is None
    assert db_lock.driver_problem("http://host:5000") is None


def test_what_is_no_database_takes_no_lock() -> None:
    for url in ("http://127.0.0.1:5000", "file:///tmp/mlruns", "sqlite:///:memory:"):
        with db_lock.database_lock(url, "x"):
            pass
    assert not db_lock.is_database_url("https://mlflow.example.org")
    assert db_lock.is_database_url("mysql+pymysql://u@h/db")
    assert db_lock.dialect("postgresql+psycopg://u@h/db") == "postgresql"
