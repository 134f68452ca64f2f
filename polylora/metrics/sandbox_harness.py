"""The program that runs INSIDE the jail (stdlib only; executed by a bare ``python -I -S``).

Usage: ``python -I -S -B sandbox_harness.py MODE JOB_DIR RESULT_FD MEMORY_BYTES CPU_S FSIZE
NPROC``. It first lowers its own resource limits (hard limits too, so the code it runs can
never raise them), then:

- ``program`` mode runs ``JOB_DIR/program.py`` as ``__main__`` and, if it returns, writes
  ``completed`` on the result descriptor. The program is the whole subject here, so it could
  write that record itself: use ``tests`` mode when trusted tests judge untrusted code.
- ``tests`` mode keeps untrusted code out of the process that owns the verdict. This process
  (the *judge*) makes itself non-dumpable (so no other process of the jail may ptrace it or
  open its ``/proc/<pid>/mem`` or ``fd/``), then forks a *candidate* process that closes the
  result descriptor before it runs ``JOB_DIR/candidate.py``. The judge runs the trusted
  ``prelude.py`` and ``tests.py``, where ``candidate`` is a proxy: each call's arguments go to
  the candidate process as a Python literal, and only a Python literal comes back
  (``ast.literal_eval``, so no object with a rigged ``__eq__`` crosses). When ``check`` returns,
  the judge writes ``passed`` on the result descriptor, which only it holds.
"""

import ast
import contextlib
import os
import resource
import sys
from typing import Any

MAX_MESSAGE = 1 << 20  # one call's arguments or reply, in bytes


def _limit(memory_bytes: int, cpu_s: int, fsize: int, nproc: int) -> None:
    for name, value in (
        ("RLIMIT_AS", memory_bytes),
        ("RLIMIT_CPU", cpu_s),
        ("RLIMIT_FSIZE", fsize),
        ("RLIMIT_NPROC", nproc),
        ("RLIMIT_CORE", 0),
        ("RLIMIT_NOFILE", 256),
    ):
        resource.setrlimit(getattr(resource, name), (value, value))


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _run_program(job: str, result_fd: int) -> None:
    source = _read(os.path.join(job, "program.py"))
    try:
        exec(compile(source, "program.py", "exec"), {"__name__": "__main__"})
    except BaseException:  # SystemExit included: leaving early is not completing
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(result_fd, b"completed\n")
    os._exit(0)


def _send(fd: int, payload: bytes) -> None:
    data = len(payload).to_bytes(4, "big") + payload
    while data:
        data = data[os.write(fd, data) :]


def _recv(fd: int) -> bytes:
    def exactly(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                raise EOFError("the candidate process ended")
            buf += chunk
        return buf

    size = int.from_bytes(exactly(4), "big")
    if size > MAX_MESSAGE:
        raise ValueError(f"reply of {size} bytes is over the {MAX_MESSAGE}-byte limit")
    return exactly(size)


def _serve_candidate(job: str, entry_point: str, requests: int, replies: int) -> None:
    """The candidate process: define the untrusted code, then answer calls until EOF."""
    namespace: dict[str, Any] = {"__name__": "__main__"}
    try:
        exec(compile(_read(os.path.join(job, "candidate.py")), "candidate.py", "exec"), namespace)
        function = namespace[entry_point]
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    while True:
        try:
            args = ast.literal_eval(_recv(requests).decode("utf-8"))
        except EOFError:
            os._exit(0)
        try:
            reply = "ok " + repr(function(*args))
        except BaseException as exc:  # reported to the judge, which fails the test
            reply = "raise " + repr(f"{type(exc).__name__}: {exc}")
        _send(replies, reply.encode("utf-8", errors="replace"))


class CandidateError(Exception):
    """The candidate raised, returned something that is not a Python literal, or died."""


def _run_tests(job: str, result_fd: int, entry_point: str) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(4, 0, 0, 0, 0) != 0:  # PR_SET_DUMPABLE = 0
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")
    to_candidate_r, to_candidate_w = os.pipe()
    to_judge_r, to_judge_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(result_fd)
        os.close(to_candidate_w)
        os.close(to_judge_r)
        _serve_candidate(job, entry_point, to_candidate_r, to_judge_w)
        os._exit(0)
    os.close(to_candidate_r)
    os.close(to_judge_w)

    def candidate(*args: Any) -> Any:
        text = repr(args)
        try:
            if ast.literal_eval(text) != args:
                raise ValueError
        except Exception:
            raise CandidateError(f"arguments {text[:200]} are not Python literals") from None
        try:
            _send(to_candidate_w, text.encode("utf-8"))
            kind, _, body = _recv(to_judge_r).decode("utf-8", errors="replace").partition(" ")
            value = ast.literal_eval(body)
        except (OSError, EOFError, ValueError, SyntaxError, RecursionError, MemoryError) as exc:
            raise CandidateError(f"{type(exc).__name__}: {exc}") from None
        if kind == "raise":
            raise CandidateError(str(value))
        if kind != "ok":
            raise CandidateError("malformed reply")
        return value

    namespace: dict[str, Any] = {"__name__": "__main__"}
    try:
        prelude = _read(os.path.join(job, "prelude.py"))
        # the problem's own helpers (HumanEval prompts define some); may be partial
        with contextlib.suppress(Exception):
            exec(compile(prelude, "prelude.py", "exec"), namespace)
        namespace[entry_point] = candidate
        exec(compile(_read(os.path.join(job, "tests.py")), "tests.py", "exec"), namespace)
        namespace["check"](candidate)
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    os.write(result_fd, b"passed\n")
    os._exit(0)


def main() -> None:
    mode, job, result_fd = sys.argv[1], sys.argv[2], int(sys.argv[3])
    memory_bytes, cpu_s, fsize, nproc = (int(x) for x in sys.argv[4:8])
    _limit(memory_bytes, cpu_s, fsize, nproc)
    if mode == "program":
        _run_program(job, result_fd)
    elif mode == "tests":
        _run_tests(job, result_fd, sys.argv[8])
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
