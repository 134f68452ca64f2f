"""The jail: each attack that escaped the old audit-hook sandbox, now contained; the refusal
path where bubblewrap is missing; unsafe_ok as the only, warned, way past it.

The attack tests need the jail. Where this machine cannot build it they are skipped with the
line saying what to install, and the refusal tests (which simulate a missing bwrap) still
run; with ``POLYLORA_REQUIRE_JAIL=1`` (set by ``.ci/run``) a missing jail fails instead.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from pathlib import Path

import pytest

from polylora.errors import ConfigError
from polylora.metrics import sandbox
from polylora.metrics.sandbox import run_python, run_tests

_PROBLEM = sandbox.jail_problem()
needs_jail = pytest.mark.skipif(
    _PROBLEM is not None and os.environ.get("POLYLORA_REQUIRE_JAIL") != "1",
    reason=f"no jail here: {_PROBLEM}",
)


def test_jail_is_available_where_required() -> None:
    if os.environ.get("POLYLORA_REQUIRE_JAIL") == "1":
        assert _PROBLEM is None, _PROBLEM
    else:  # the probe's answer is one line naming what to install, or nothing
        assert _PROBLEM is None or "bubblewrap" in _PROBLEM


def _host_processes_with(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(pid))
    return found


@needs_jail
def test_shell_escape_through_fork_exec_cannot_touch_the_host(tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    program = f"""
import _posixsubprocess, os
r, w = os.pipe()
args = [b"/bin/sh", b"-c", b"echo pwned > {target}; echo ran-shell"]
pid = _posixsubprocess.fork_exec(args, args, True, (), None, None, -1, -1, -1, -1, -1, -1,
    r, w, False, False, -1, None, None, None, -1, None, False)
os.waitpid(pid, 0)
"""
    result = run_python(program)
    # The shell may run (it is inside the jail); what it writes cannot reach the host.
    assert not target.exists()
    assert result.status in ("passed", "failed")


@needs_jail
def test_network_is_unreachable() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    port = server.getsockname()[1]
    try:
        program = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        result = run_python(program)
        assert result.status == "failed"
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()


@needs_jail
@pytest.mark.parametrize(
    "attack",
    [
        # a descriptor on the directory, then a relative create
        "fd = os.open({dir!r}, os.O_RDONLY)\nos.open('new', os.O_CREAT | os.O_WRONLY, dir_fd=fd)",
        # a hard link of the file into the writable dir, then a write through it
        "os.link({file!r}, 'link')\nopen('link', 'w').write('owned')",
        # chmod through a descriptor
        "fd = os.open({file!r}, os.O_RDONLY)\nos.fchmod(fd, 0o777)",
        # overwrite in place
        "open({file!r}, 'w').write('owned')",
        # rename away / unlink
        "os.unlink({file!r})",
    ],
    ids=["dir_fd", "hard_link", "fchmod", "open_w", "unlink"],
)
def test_writes_outside_are_impossible(tmp_path: Path, attack: str) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    keep = shared / "keep.txt"
    keep.write_text("original")
    keep.chmod(0o644)
    mode = keep.stat().st_mode
    # Even a path the jail can see (read-only) cannot be changed.
    result = run_python(
        "import os\n" + attack.format(dir=str(shared), file=str(keep)) + "\n",
        read_only_paths=[str(shared)],
    )
    assert result.status == "failed", result.output
    assert keep.read_text() == "original"
    assert keep.stat().st_mode == mode
    assert sorted(p.name for p in shared.iterdir()) == ["keep.txt"]


@needs_jail
def test_mknod_of_a_device_is_denied() -> None:
    program = (
        "import os, stat\n"
        "os.mknod('disk', stat.S_IFBLK | 0o666, os.makedev(8, 0))\n"
        "print('MKNOD-OK')\n"
    )
    result = run_python(program)
    assert result.status == "failed"
    assert "MKNOD-OK" not in result.output
    assert "PermissionError" in result.output or "OperationNotPermitted" in result.output


@needs_jail
def test_the_host_filesystem_is_not_visible(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do-not-read")
    result = run_python(f"print(open({str(secret)!r}).read())\n")
    assert result.status == "failed"
    assert "do-not-read" not in result.output
    home = run_python("import os\nprint(os.path.exists('/root'), os.path.exists('/home/x'))\n")
    assert home.status == "passed"


@needs_jail
@pytest.mark.parametrize("kind", ["fifo", "dev_zero"])
def test_output_files_replaced_by_fifo_or_dev_zero_do_not_hang_the_parent(kind: str) -> None:
    make = "os.mkfifo(name)" if kind == "fifo" else "os.symlink('/dev/zero', name)"
    program = (
        "import os, sys\n"
        "for name in ('output.log', 'stdout', 'result', 'program.py'):\n"
        f"    {make}\n"
        "sys.stdout.write('x' * (4 * 1024 * 1024))\n"
    )
    result = run_python(program, timeout_s=10, max_output_bytes=1000)
    assert result.status == "passed"
    assert len(result.output) == 1000


@needs_jail
def test_endless_output_is_bounded_and_timed_out() -> None:
    result = run_python(
        "import sys\nwhile True:\n    sys.stdout.write('y' * 65536)\n",
        timeout_s=1.0,
        max_output_bytes=2048,
    )
    assert result.status in ("timeout", "failed")  # RLIMIT_FSIZE does not apply to pipes
    assert len(result.output) <= 2048


@needs_jail
def test_printed_or_stolen_markers_do_not_forge_a_pass() -> None:
    # The old sandbox printed a nonce at the end; reading it from a frame or exiting 0 early
    # faked a pass. Now the record is written by the judge process only.
    tests = "def check(candidate):\n    assert candidate(2) == 4\n"
    forgeries = [
        "import os\nos._exit(0)\ndef f(x):\n    return 0\n",
        "import sys\nsys.exit(0)\n",
        # write every plausible verdict string to every descriptor it has
        "import os\nfor fd in range(3, 64):\n    for rec in (b'passed\\n', b'completed\\n'):\n"
        "        try: os.write(fd, rec)\n        except OSError: pass\n"
        "def f(x):\n    return 0\n",
        # find the judge and write to its result descriptor through /proc
        "import os\nfor pid in os.listdir('/proc'):\n    try:\n"
        "        for fd in os.listdir(f'/proc/{pid}/fd'):\n"
        "            with open(f'/proc/{pid}/fd/{fd}', 'wb') as out: out.write(b'passed\\n')\n"
        "    except OSError: pass\n"
        "def f(x):\n    return 0\n",
        # an object equal to everything
        "class Any:\n    def __eq__(self, other):\n        return True\n"
        "def f(x):\n    return Any()\n",
        # kill the judge
        "import os, signal\ndef f(x):\n    os.kill(os.getppid(), signal.SIGKILL)\n",
    ]
    for candidate in forgeries:
        result = run_tests(candidate, tests, "f")
        assert result.status == "failed", (candidate, result)
    assert run_tests("def f(x):\n    return x * 2\n", tests, "f").status == "passed"


@needs_jail
def test_early_exit_is_not_a_pass_of_a_program() -> None:
    assert run_python("import os\nos._exit(0)\nassert False\n").status == "failed"
    assert run_python("import sys\nsys.exit(0)\n").status == "failed"
    assert run_python("print('fine')\n").status == "passed"


@needs_jail
def test_setsid_child_does_not_outlive_the_run() -> None:
    marker = f"survivor-{uuid.uuid4().hex}"
    program = f"""
import subprocess, sys
import time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)  # {marker}"],
                         start_new_session=True)
time.sleep(0.5)
print("started" if child.poll() is None else "child ended early")
"""
    result = run_python(program)
    assert result.status == "passed", result.output
    assert "started" in result.output
    assert _host_processes_with(marker) == []


@needs_jail
def test_fork_bomb_is_bounded() -> None:
    program = """
import os, time
children = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(30)
            os._exit(0)
        children += 1
except OSError as exc:
    print("stopped after", children, type(exc).__name__)
"""
    result = run_python(program, timeout_s=10, max_processes=16)
    assert result.status == "passed", result.output
    count = int(result.output.split("stopped after")[1].split()[0])
    assert count < 16


@needs_jail
def test_memory_limit() -> None:
    result = run_python("x = bytearray(2 * 1024 ** 3)\n", memory_mb=256)
    assert result.status == "failed"
    assert "MemoryError" in result.output


@needs_jail
def test_environment_and_secrets_are_not_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-ant-" + uuid.uuid4().hex
    monkeypatch.setenv("ANTHROPIC_API_KEY", secret)
    program = """
import os
print(dict(os.environ))
for pid in os.listdir('/proc'):
    if pid.isdigit():
        try:
            print(open(f'/proc/{pid}/environ', 'rb').read())
        except OSError as exc:
            print(exc)
"""
    result = run_python(program)
    assert result.status == "passed", result.output
    assert secret not in result.output
    assert "ANTHROPIC_API_KEY" not in result.output


@needs_jail
def test_scratch_files_in_the_own_dir_work() -> None:
    program = "open('scratch.txt', 'w').write('hi')\nassert open('scratch.txt').read() == 'hi'\n"
    assert run_python(program).status == "passed"
    assert run_python("open('/tmp/x', 'w').write('1')\n").status == "passed"


@needs_jail
def test_timeout_kills_the_program() -> None:
    result = run_python("while True:\n    pass\n", timeout_s=1.0)
    assert result.status == "timeout"
    assert result.returncode is not None


def test_missing_bubblewrap_is_refused_with_the_install_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(sandbox.BWRAP_ENV, "/nonexistent/bwrap")
    monkeypatch.setattr(sandbox, "_unsafe_ok", False)
    problem = sandbox.jail_problem()
    assert problem is not None and "apt-get install -y bubblewrap" in problem
    result = run_python("print('ran')\n")
    assert result.status == "refused"
    assert "ran" not in result.output
    assert "bubblewrap" in result.reason and "unsafe_ok=true" in result.reason
    with pytest.raises(ConfigError, match=r"refusing.*bubblewrap.*unsafe_ok=true"):
        sandbox.require_jail()


def test_unsafe_ok_is_the_only_way_past_and_it_warns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(sandbox.BWRAP_ENV, "/nonexistent/bwrap")
    monkeypatch.setattr(sandbox, "_unsafe_ok", False)
    with caplog.at_level(logging.WARNING, logger="polylora.metrics.sandbox"):
        result = run_python("print('ran')\n", unsafe_ok=True)
    assert result.status == "passed" and "ran" in result.output
    assert "WITHOUT the jail" in caplog.text
    sandbox.allow_unsafe(True)
    try:
        sandbox.require_jail()  # no error now
        assert run_python("print('ran')\n").status == "passed"
    finally:
        sandbox.allow_unsafe(False)


def test_bad_limits_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="timeout_s"):
        run_python("pass", timeout_s=0)


def test_an_interpreter_the_jail_cannot_read_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "_interpreter", lambda: ("/nonexistent/python3", "/usr"))
    sandbox._probe.cache_clear()
    try:
        problem = sandbox.jail_problem()
        assert problem is not None and "apt-get install -y python3" in problem
    finally:
        sandbox._probe.cache_clear()
