"""The jail for model-written code: ``run_python(source, *, timeout_s, memory_mb)``.

Every program runs under bubblewrap (``bwrap``), the unprivileged sandbox tool behind
Flatpak, with:

- fresh user, pid, mount, network, IPC, UTS and cgroup namespaces (``--unshare-all``): no
  network interface but loopback, no view of the machine's processes;
- a read-only view of ``/usr`` (and the interpreter's prefix) only: no ``/home``, ``/root``,
  ``/etc`` secrets, repository or MLflow store; a private ``/tmp`` and a writable ``/work``
  (its own temp dir, deleted afterwards); a minimal ``/dev``;
- a clean environment (``--clearenv``; nothing inherited, so no API key to read);
- every capability dropped, a new session (no terminal injection), and, when polylora runs as
  root, the jail runs as ``nobody`` (RLIMIT_NPROC is not enforced for root);
- RLIMIT_AS / CPU / FSIZE / NPROC / NOFILE set by the harness before any untrusted code;
- the whole process tree killed on return: the parent SIGKILLs bwrap, whose death ends the
  pid namespace (``--die-with-parent``), so a ``setsid`` grandchild cannot outlive it.

Output and the verdict come back through pipes the parent created and holds; nothing is
re-opened by name, and both are read with a size bound. The verdict is a record on a result
descriptor plus the exit status, never a string on stdout; ``run_tests`` keeps untrusted
code out of the process that owns that descriptor (see ``polylora.metrics.sandbox_harness``).

Where the jail cannot be built, code execution is refused with one line saying what to
install; ``eval.code_execution.unsafe_ok=true`` (``allow_unsafe(True)``) is the only way
past it, and it runs the same harness in a plain subprocess after a warning.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from polylora.errors import ConfigError

log = logging.getLogger(__name__)

Status = Literal["passed", "failed", "timeout", "refused"]
BWRAP_ENV = "POLYLORA_BWRAP"  # path of the bwrap binary (default: found on PATH)
NOBODY = 65534
HARNESS = Path(__file__).with_name("sandbox_harness.py")
INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt-get install -y bubblewrap; Fedora: dnf install "
    "bubblewrap; `make install` does it when run as root with apt-get)"
)
UNSAFE_HINT = "or, only for code you trust, set eval.code_execution.unsafe_ok=true"
_unsafe_ok = False


@dataclass(frozen=True)
class SandboxResult:
    """One run: ``passed`` only if the verdict record arrived and the jail exited 0."""

    status: Status
    returncode: int | None
    output: str  # the last ``max_output_bytes`` of stdout+stderr, decoded leniently
    reason: str = ""  # why it was refused, when it was

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def allow_unsafe(ok: bool) -> None:
    """Set the process-wide ``eval.code_execution.unsafe_ok`` (the entry point calls this)."""
    global _unsafe_ok
    _unsafe_ok = bool(ok)


def unsafe_allowed() -> bool:
    """Whether running without the jail was explicitly allowed."""
    return _unsafe_ok


def _bwrap() -> str | None:
    return shutil.which(os.environ.get(BWRAP_ENV, "bwrap"))


def _readable_by_all(path: Path) -> bool:
    """Whether a process as ``nobody`` can reach ``path`` (others' x on every parent)."""
    path = path.resolve()
    try:
        if not path.stat().st_mode & stat.S_IROTH:
            return False
        return all(p.stat().st_mode & stat.S_IXOTH for p in path.parents)
    except OSError:
        return False


def _interpreter() -> tuple[str, str]:
    """(python binary, its prefix) the jail runs: this interpreter where the jail user can
    read it, else the system's ``/usr/bin/python3`` (the harness needs the stdlib only)."""
    exe, prefix = os.path.realpath(sys.executable), os.path.realpath(sys.base_prefix)
    if os.geteuid() != 0 or (_readable_by_all(Path(exe)) and _readable_by_all(Path(prefix))):
        return exe, prefix
    system = "/usr/bin/python3"
    return os.path.realpath(system), "/usr"


def _jail_user() -> int | None:
    return NOBODY if os.geteuid() == 0 else None


def _bwrap_args(
    bwrap: str, job: Path, work: Path, python_prefix: str, read_only: Sequence[str] = ()
) -> list[str]:
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--clearenv"]
    args += ["--cap-drop", "ALL", "--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        top = Path("/") / name
        if top.is_symlink():
            args += ["--symlink", os.readlink(top), str(top)]
        elif top.is_dir():
            args += ["--ro-bind", str(top), str(top)]
    args += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    if not python_prefix.startswith("/usr/") and python_prefix != "/usr":
        args += ["--ro-bind", python_prefix, python_prefix]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for path in read_only:
        args += ["--ro-bind", str(path), str(path)]
    args += ["--ro-bind", str(job), "/job", "--bind", str(work), "/work", "--chdir", "/work"]
    env = {"PATH": "/usr/bin:/bin", "HOME": "/work", "TMPDIR": "/tmp", "LANG": "C.UTF-8"}
    for key, value in env.items():
        args += ["--setenv", key, value]
    return args


@lru_cache(maxsize=4)
def _probe(bwrap: str | None) -> str | None:
    if bwrap is None:
        return f"the code-execution jail needs bubblewrap (bwrap), not installed: {INSTALL_HINT}"
    exe, prefix = _interpreter()
    if not os.path.isfile(exe):
        return (
            f"the jail runs as nobody and cannot read this Python ({sys.executable}); install the "
            "system python3 (apt-get install -y python3) or an interpreter others can read"
        )
    with tempfile.TemporaryDirectory(prefix="polylora-probe-") as tmp:
        job, work = Path(tmp, "job"), Path(tmp, "work")
        _prepare_dirs(job, work)
        cmd = [*_bwrap_args(bwrap, job, work, prefix), exe, "-I", "-S", "-c", "pass"]
        try:
            done = subprocess.run(
                cmd, capture_output=True, timeout=30, env={}, **_user_kwargs(), check=False
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"bubblewrap ({bwrap}) cannot start: {exc}; {INSTALL_HINT}"
    if done.returncode != 0:
        why = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        return (
            f"bubblewrap ({bwrap}) cannot build the jail here ({why}); allow unprivileged user "
            "namespaces (sysctl kernel.unprivileged_userns_clone=1 / user.max_user_namespaces>0)"
        )
    return None


def jail_problem() -> str | None:
    """None when the jail works on this machine, else one line saying what is missing and how
    to install it (probed once per bwrap path)."""
    return _probe(_bwrap())


def require_jail(unsafe_ok: bool | None = None) -> None:
    """Raise ConfigError (one line) unless the jail works or running unsafely was allowed."""
    problem = jail_problem()
    if problem and not (unsafe_allowed() if unsafe_ok is None else unsafe_ok):
        raise ConfigError(f"refusing to execute model-written code: {problem}; {UNSAFE_HINT}")


def _user_kwargs() -> dict[str, Any]:
    user = _jail_user()
    return {} if user is None else {"user": user, "group": user, "extra_groups": []}


def _prepare_dirs(job: Path, work: Path) -> None:
    job.mkdir(mode=0o755)
    work.mkdir(mode=0o700)
    job.parent.chmod(0o755)
    user = _jail_user()
    if user is not None:
        os.chown(work, user, user)


class _Drain(threading.Thread):
    """Reads a pipe to EOF, keeping only the last ``limit`` bytes."""

    def __init__(self, fd: int, limit: int) -> None:
        super().__init__(daemon=True)
        self.fd, self.limit, self.data = fd, limit, bytearray()

    def run(self) -> None:
        with contextlib.suppress(OSError):
            while chunk := os.read(self.fd, 65536):
                self.data += chunk
                if len(self.data) > self.limit:
                    del self.data[: len(self.data) - self.limit]
        os.close(self.fd)


def _execute(
    mode: str,
    files: dict[str, str],
    extra: list[str],
    timeout_s: float,
    memory_mb: int,
    max_output_bytes: int,
    max_processes: int,
    unsafe_ok: bool | None,
    read_only_paths: Sequence[str] = (),
) -> SandboxResult:
    if not (timeout_s > 0 and memory_mb > 0 and max_output_bytes > 0 and max_processes > 0):
        raise ConfigError(
            f"code execution needs timeout_s, memory_mb, max_output_bytes and max_processes > 0, "
            f"got {timeout_s}, {memory_mb}, {max_output_bytes}, {max_processes}"
        )
    bwrap = _bwrap()
    problem = _probe(bwrap)
    allowed = unsafe_allowed() if unsafe_ok is None else unsafe_ok
    if problem and not allowed:
        return SandboxResult("refused", None, "", reason=f"{problem}; {UNSAFE_HINT}")
    tmp = Path(tempfile.mkdtemp(prefix="polylora-jail-"))
    try:
        job, work = tmp / "job", tmp / "work"
        _prepare_dirs(job, work)
        shutil.copyfile(HARNESS, job / "harness.py")
        for name, text in files.items():
            (job / name).write_text(text, encoding="utf-8")
        for path in job.iterdir():
            path.chmod(0o644)
        limits = [str(memory_mb * 2**20), str(math.ceil(timeout_s) + 1), str(64 * 2**20)]
        limits.append(str(max_processes))
        result_r, result_w = os.pipe()
        out_r, out_w = os.pipe()
        if problem:  # unsafe_ok: same harness, no jail
            log.warning("running model-written code WITHOUT the jail (unsafe_ok): %s", problem)
            exe, where, cwd, prefix = sys.executable, str(job), str(work), []
        else:
            exe, python_prefix = _interpreter()
            where, cwd = "/job", None
            prefix = _bwrap_args(bwrap or "bwrap", job, work, python_prefix, read_only_paths)
        command = [*prefix, exe, "-I", "-S", "-B", f"{where}/harness.py", mode, where,
                   str(result_w), *limits, *extra]  # fmt: skip
        try:
            proc = subprocess.Popen(
                command,
                cwd=cwd,
                env=({} if not problem
                     else {"PATH": os.defpath, "LANG": "C.UTF-8", "HOME": str(cwd)}),
                stdin=subprocess.DEVNULL,
                stdout=out_w,
                stderr=out_w,
                pass_fds=(result_w,),
                start_new_session=True,
                **({} if problem else _user_kwargs()),
            )
        finally:
            os.close(result_w)
            os.close(out_w)
        output, record = _Drain(out_r, max_output_bytes), _Drain(result_r, 64)
        output.start()
        record.start()
        try:
            proc.wait(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:  # the whole tree: bwrap's death ends the pid namespace
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        output.join(timeout=5)
        record.join(timeout=5)
        text = bytes(output.data).decode("utf-8", errors="replace")
        if timed_out:
            return SandboxResult("timeout", proc.returncode, text)
        want = b"completed\n" if mode == "program" else b"passed\n"
        ok = proc.returncode == 0 and bytes(record.data) == want
        return SandboxResult("passed" if ok else "failed", proc.returncode, text)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_python(
    source: str,
    *,
    timeout_s: float = 5.0,
    memory_mb: int = 1024,
    max_output_bytes: int = 64 * 1024,
    max_processes: int = 32,
    unsafe_ok: bool | None = None,
    read_only_paths: Sequence[str] = (),
) -> SandboxResult:
    """Run Python ``source`` in the jail; ``passed`` iff it ran to its end (an exception,
    ``sys.exit`` or ``os._exit`` before the end is ``failed``). ``refused`` (with ``reason``)
    where the jail cannot be built and running unsafely was not allowed.
    ``read_only_paths``: host files or folders the program may read (data it needs)."""
    return _execute("program", {"program.py": source}, [], timeout_s, memory_mb,
                    max_output_bytes, max_processes, unsafe_ok, read_only_paths)  # fmt: skip


def run_tests(
    candidate: str,
    tests: str,
    entry_point: str,
    *,
    prelude: str = "",
    timeout_s: float = 5.0,
    memory_mb: int = 1024,
    max_output_bytes: int = 64 * 1024,
    max_processes: int = 32,
    unsafe_ok: bool | None = None,
) -> SandboxResult:
    """Judge untrusted ``candidate`` code with trusted ``tests`` (which define
    ``check(candidate)``): the candidate runs in its own process of the jail and answers calls
    of ``entry_point`` with Python literals; ``passed`` iff ``check`` returned in the judge
    process, the only one holding the result descriptor."""
    if not entry_point.isidentifier():
        raise ConfigError(f"entry point {entry_point!r} is not a Python identifier")
    files = {"candidate.py": candidate, "tests.py": tests, "prelude.py": prelude}
    return _execute("tests", files, [entry_point], timeout_s, memory_mb, max_output_bytes,
                    max_processes, unsafe_ok)  # fmt: skip
