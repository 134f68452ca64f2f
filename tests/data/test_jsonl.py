"""JSONL loading: prompt/response and chat records; every error names file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from polylora.data.jsonl import JsonlSource
from polylora.errors import DataError


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_prompt_response_and_messages(tmp_path: Path) -> None:
    f = write(
        tmp_path / "d.jsonl",
        [
            json.dumps(
                {"id": "a", "prompt": "hi", "response": "yo", "group": 3, "severity": "low"}
            ),
            "",
            json.dumps(
                {
                    "messages": [
                        {"role": "user", "content": "q"},
                        {"role": "assistant", "content": "r"},
                    ]
                }
            ),
        ],
    )
    a, b = JsonlSource(str(f)).load()
    assert (a.id, a.prompt, a.response, a.group, a.fields) == (
        "a",
        "hi",
        "yo",
        "3",
        {"severity": "low"},
    )
    assert b.prompt == ({"role": "user", "content": "q"},) and b.response == "r"
    assert b.id == "line-000003"


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"prompt": "a", "response": "b"}', "{not json"], r"d\.jsonl:2: not valid JSON"),
        (['{"response": "b"}'], r"d\.jsonl:1: missing field 'prompt'"),
        (['{"prompt": "a"}'], r"d\.jsonl:1: missing field 'response'"),
        (["[1, 2]"], r"d\.jsonl:1: expected a JSON object"),
        (['{"id": 1, "prompt": "a", "response": "b"}'] * 2, r"d\.jsonl:2: duplicate id"),
        (['{"messages": [{"role": "user", "content": "q"}]}'], "last message"),
    ],
)
def test_bad_lines_name_file_and_line(tmp_path: Path, lines: list[str], message: str) -> None:
    f = write(tmp_path / "d.jsonl", lines)
    with pytest.raises(DataError, match=message):
        JsonlSource(str(f)).load()


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        JsonlSource(str(empty)).load()
    with pytest.raises(DataError, match="not found"):
        JsonlSource(str(tmp_path / "nope.jsonl")).load()
