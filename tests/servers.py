"""Real servers for tests, on loopback: a PostgreSQL server (Debian's ``initdb``/``pg_ctl``,
run as an unprivileged user when the tests run as root, since PostgreSQL refuses root) and an
``mlflow server`` on one of its databases with proxied artifacts (``launchers/mlflow_ui.sh``).

A server that cannot start skips its tests with the reason, except under CI (``CI=true`` or
``POLYLORA_REQUIRE_SERVERS=1``), where it fails them: CI must never skip a server test.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest
from helpers import REPO

PG_USER = "polylora"


def servers_required() -> bool:
    """Whether a server that cannot start fails the test (CI) rather than skipping it."""
    return (os.environ.get("CI", "").lower() in ("1", "true", "yes")
            or os.environ.get("POLYLORA_REQUIRE_SERVERS") == "1")


def unavailable(reason: str) -> NoReturn:
    """Skip with ``reason``; fail under CI."""
    if servers_required():
        pytest.fail(f"{reason} (servers are required here: CI or POLYLORA_REQUIRE_SERVERS=1)")
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_bindir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: $POLYLORA_PG_BINDIR, PATH, or Debian's
    /usr/lib/postgresql/<version>/bin (newest)."""
    if os.environ.get("POLYLORA_PG_BINDIR"):
        return Path(os.environ["POLYLORA_PG_BINDIR"])
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                      key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(versions[-1]).parent if versions else None


@dataclass
class Postgres:
    """A running PostgreSQL server on 127.0.0.1 (trust authentication, user ``polylora``)."""

    port: int
    root: Path

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` (psycopg 3 driver)."""
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(host="127.0.0.1", port=self.port, user=PG_USER,
                             dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_server_user() -> tuple[list[str], tuple[int, int] | None]:
    """The command prefix that runs PostgreSQL's programs as an unprivileged user, and that
    user's (uid, gid) to own the data directory; ([], None) when not root."""
    if os.geteuid() != 0:
        return [], None
    try:
        user = pwd.getpwnam(os.environ.get("POLYLORA_PG_OS_USER", "postgres"))
    except KeyError:
        unavailable("PostgreSQL refuses to run as root and there is no 'postgres' user "
                    "(apt-get install postgresql creates it; or set POLYLORA_PG_OS_USER)")
    if shutil.which("runuser"):
        return ["runuser", "-u", user.pw_name, "--"], (user.pw_uid, user.pw_gid)
    return (["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"],
            (user.pw_uid, user.pw_gid))


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    """Start a throw-away PostgreSQL server (fsync off: test data only), stop it on exit."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed: pip install -e '.[dev]' (it pulls the cluster "
                    "extra)")
    bindir = postgres_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        unavailable("PostgreSQL's initdb/pg_ctl were not found (apt-get install postgresql, "
                    "or set POLYLORA_PG_BINDIR)")
    prefix, owner = _as_server_user()
    root = Path(tempfile.mkdtemp(prefix="polylora-pg-"))
    data, log = root / "data", root / "server.log"
    os.chmod(root, 0o755)
    if owner is not None:
        os.chown(root, *owner)
    port = free_port()
    run = {"capture_output": True, "text": True, "timeout": 120}
    init = subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", PG_USER,
                           "--auth=trust", "-E", "UTF8", "--no-sync"], **run)  # type: ignore[call-overload]
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        unavailable(f"initdb failed: {init.stderr.strip()[-500:]}")
    options = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300")
    start = subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log),
                            "-o", options, "-w", "-t", "60", "start"], **run)  # type: ignore[call-overload]
    if start.returncode != 0:
        text = log.read_text()[-500:] if log.exists() else start.stderr[-500:]
        shutil.rmtree(root, ignore_errors=True)
        unavailable(f"PostgreSQL did not start: {text.strip()}")
    try:
        yield Postgres(port, root)
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def wait_http(url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
    """Whether ``url`` answered 200 within ``timeout`` seconds (False early if ``proc`` died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    return False


@dataclass
class MlflowServer:
    """A running ``mlflow server``: its URL, backend store and artifact destination."""

    url: str
    backend: str
    artifacts: Path
    log: Path


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process started with ``start_new_session=True`` and everything it started."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


@contextlib.contextmanager
def mlflow_server(backend: str, root: Path, **env: str) -> Iterator[MlflowServer]:
    """``launchers/mlflow_ui.sh <backend> <port>`` with artifacts proxied to ``root``;
    ``env``: extra variables for the launcher (HOST, ALLOWED_HOSTS, ...)."""
    port = free_port()
    artifacts, log = root / "artifacts", root / "mlflow-server.log"
    artifacts.mkdir(parents=True, exist_ok=True)
    environ = {**os.environ, "PYTHON": sys.executable, "ARTIFACTS": str(artifacts),
               "MLFLOW_SERVER_WORKERS": "1", **env}
    environ.pop("MLFLOW_TRACKING_URI", None)
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", str(REPO / "launchers" / "mlflow_ui.sh"), backend,
                                 str(port)], stdout=out, stderr=subprocess.STDOUT, env=environ,
                                cwd=root, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        if not wait_http(f"{url}/health", 120, proc):
            unavailable(f"mlflow server did not start: {log.read_text()[-800:]}")
        yield MlflowServer(url, backend, artifacts, log)
    finally:
        stop_process_group(proc)
