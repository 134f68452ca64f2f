"""HumanEval in the jail: opt-in, correct/wrong verdicts, prompt helpers, refusal without the
jail (the attacks themselves are in tests/metrics/test_sandbox.py)."""

from __future__ import annotations

import pytest
from helpers import jail_or_skip

from polylora.data.humaneval import read_humaneval_problems
from polylora.errors import ConfigError
from polylora.metrics import sandbox
from polylora.metrics.code_exec import (
    HumanEvalChecker,
    build_program,
    extract_code,
    load_humaneval_examples,
    run_program,
)


@pytest.fixture(scope="module")
def checker() -> HumanEvalChecker:
    jail_or_skip()
    return HumanEvalChecker(allow_code_execution=True, timeout=5.0, memory_mb=512)


def test_requires_explicit_opt_in() -> None:
    with pytest.raises(ConfigError, match=r"eval\.allow_code_execution=true"):
        HumanEvalChecker()


def test_bundled_problems_ship_in_the_wheel() -> None:
    problems = read_humaneval_problems()
    assert len(problems) == 164
    examples = load_humaneval_examples(limit=2)
    assert [e.id for e in examples] == ["HumanEval/0", "HumanEval/1"]
    assert {"test", "entry_point", "prompt"} <= set(examples[0].fields)


def test_correct_solution_passes_wrong_fails(checker: HumanEvalChecker) -> None:
    example = load_humaneval_examples(task_ids=["HumanEval/0"])[0]
    assert checker(example, example.response).correct
    assert not checker(example, "    return False\n").correct
    full = (
        "Here you go:\n```python\ndef has_close_elements(numbers, threshold):\n"
        "    return any(abs(a - b) < threshold for i, a in enumerate(numbers)"
        " for b in numbers[i + 1:])\n```"
    )
    assert checker(example, full).correct  # whole function in a fence, no prompt prefix
    # lookup by id when the example carries no test fields
    bare = type(example)(id="HumanEval/0", prompt=example.prompt, response=example.response)
    assert checker(bare, example.response).correct


def test_check_batch_matches_single_calls(checker: HumanEvalChecker) -> None:
    example = load_humaneval_examples(task_ids=["HumanEval/2"])[0]
    answers = [example.response, "    return 0.0\n", example.response]
    batch = checker.check_batch([(example, a) for a in answers])
    assert [r.correct for r in batch] == [True, False, True]


def test_checker_runs_answers_in_the_jail_and_wrong_answers_fail(
    checker: HumanEvalChecker,
) -> None:
    example = load_humaneval_examples(task_ids=["HumanEval/0"])[0]
    leave_early = "    import os\n    os._exit(0)\n"
    assert not checker(example, leave_early).correct
    crash = "    raise ValueError('no')\n"
    result = checker.run(example, crash)
    assert result.status == "failed" and "ValueError" in result.output


def test_helpers_from_the_prompt_are_available_to_the_tests(checker: HumanEvalChecker) -> None:
    example = load_humaneval_examples(task_ids=["HumanEval/38"])[0]  # check uses encode_cyclic
    assert checker(example, example.response).correct
    assert not checker(example, "    return s\n").correct


def test_refuses_where_the_jail_cannot_be_built(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(sandbox.BWRAP_ENV, "/nonexistent/bwrap")
    with pytest.raises(ConfigError, match=r"bubblewrap.*eval\.code_execution\.unsafe_ok=true"):
        HumanEvalChecker(allow_code_execution=True)
    unsafe = HumanEvalChecker(allow_code_execution=True, unsafe_ok=True)
    example = load_humaneval_examples(task_ids=["HumanEval/0"])[0]
    assert unsafe(example, example.response).correct


def test_build_program_and_extract_code() -> None:
    jail_or_skip()
    assert extract_code("```python\nx = 1\n```\ntrailing") == "x = 1\n"
    assert extract_code("x = 1") == "x = 1"
    program = build_program(
        "def f():\n    '''doc'''\n", "    return 1\n", "def check(c):\n    assert c() == 1\n", "f"
    )
    assert program.endswith("check(f)\n")
    assert run_program(program).status == "passed"
