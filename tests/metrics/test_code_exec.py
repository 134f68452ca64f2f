"""Sandboxed HumanEval execution: opt-in, correct/wrong verdicts, timeout, write and network
confinement, memory limit."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from polylora.errors import ConfigError
from polylora.metrics.code_exec import (
    HumanEvalChecker,
    build_program,
    extract_code,
    humaneval_problems,
    load_humaneval_examples,
    network_namespace_prefix,
    run_program,
)


@pytest.fixture(scope="module")
def checker() -> HumanEvalChecker:
    return HumanEvalChecker(allow_code_execution=True, timeout=5.0, memory_mb=512)


@pytest.fixture
def listening_server() -> Iterator[tuple[socket.socket, int]]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.setblocking(False)
    yield server, server.getsockname()[1]
    server.close()


def _accepted(server: socket.socket) -> bool:
    try:
        conn, _ = server.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


def test_requires_explicit_opt_in() -> None:
    with pytest.raises(ConfigError, match=r"eval\.allow_code_execution=true"):
        HumanEvalChecker()


def test_bundled_problems_ship_in_the_wheel() -> None:
    problems = humaneval_problems()
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


def test_early_exit_is_not_a_pass() -> None:
    assert run_program("import os\nos._exit(0)\nassert False\n").status == "failed"
    assert run_program("import sys\nsys.exit(0)\n").status == "failed"
    assert run_program("print('fine')\n").status == "passed"


def test_infinite_loop_is_killed_by_timeout() -> None:
    result = run_program("while True:\n    pass\n", timeout=1.0)
    assert result.status == "timeout"
    assert result.returncode is not None  # the process was reaped, not left running


def test_write_outside_temp_dir_is_blocked(tmp_path: Path) -> None:
    target = tmp_path / "escape.txt"
    result = run_program(f"open({str(target)!r}, 'w').write('x')\n")
    assert result.status == "failed"
    assert "sandbox: writing" in result.output
    assert not target.exists()
    os_level = run_program(f"import os\nos.open({str(target)!r}, os.O_CREAT | os.O_WRONLY)\n")
    assert os_level.status == "failed" and not target.exists()
    # deleting outside is blocked too
    keep = tmp_path / "keep.txt"
    keep.write_text("x")
    assert run_program(f"import os\nos.remove({str(keep)!r})\n").status == "failed"
    assert keep.exists()


def test_write_inside_temp_dir_is_allowed() -> None:
    program = "open('scratch.txt', 'w').write('hi')\nassert open('scratch.txt').read() == 'hi'\n"
    assert run_program(program).status == "passed"


def test_audit_hook_blocks_sockets(listening_server: tuple[socket.socket, int]) -> None:
    server, port = listening_server
    program = f"import socket\ns = socket.socket()\ns.connect(('127.0.0.1', {port}))\n"
    result = run_program(program, network_namespace=False)  # the hook alone
    assert result.status == "failed"
    assert "sandbox: socket" in result.output
    assert not _accepted(server)
    assert run_program(program).status == "failed"  # default: namespace (if any) + hook
    assert not _accepted(server)


def test_network_namespace_has_no_network(listening_server: tuple[socket.socket, int]) -> None:
    prefix = network_namespace_prefix()
    if not prefix:
        pytest.skip("unprivileged network namespaces are unavailable here")
    server, port = listening_server
    code = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2)"
    done = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, check=False)
    assert done.returncode != 0
    assert not _accepted(server)


def test_subprocesses_and_ctypes_are_blocked() -> None:
    assert run_program("import subprocess\nsubprocess.run(['true'])\n").status == "failed"
    assert run_program("import ctypes\n").status == "failed"


def test_memory_limit() -> None:
    result = run_program("x = bytearray(2 * 1024 ** 3)\n", memory_mb=256)
    assert result.status == "failed"
    assert "MemoryError" in result.output


def test_build_program_and_extract_code() -> None:
    assert extract_code("```python\nx = 1\n```\ntrailing") == "x = 1\n"
    assert extract_code("x = 1") == "x = 1"
    program = build_program(
        "def f():\n    '''doc'''\n", "    return 1\n", "def check(c):\n    assert c() == 1\n", "f"
    )
    assert program.endswith("check(f)\n")
    assert run_program(program).status == "passed"
