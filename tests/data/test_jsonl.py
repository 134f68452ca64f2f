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


# ---- strict about what is wrong, forgiving about what is valid

ANSWER = {"role": "assistant", "content": "r"}


def test_bom_crlf_and_unicode_line_separators_are_accepted(tmp_path: Path) -> None:
    tricky = "one\u2028two\u2029three\u0085four"
    long_prompt = "word " * 20_000
    lines = [
        json.dumps({"id": "a", "prompt": tricky, "response": "ok"}, ensure_ascii=False),
        json.dumps({"id": "b", "prompt": long_prompt, "response": tricky}, ensure_ascii=False),
    ]
    f = tmp_path / "d.jsonl"
    f.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8") + b"\r\n")
    a, b = JsonlSource(str(f)).load()
    assert a.id == "a" and a.prompt == tricky  # no BOM glued to the first key, no split at U+2028
    assert b.prompt == long_prompt and b.response == tricky


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"prompt": None, "response": "b"}, r"d\.jsonl:2: 'prompt' is null"),
        ({"prompt": 3, "response": "b"}, r"d\.jsonl:2: 'prompt' is int"),
        ({"prompt": "a", "response": None}, r"d\.jsonl:2: 'response' is null"),
        ({"prompt": "a", "response": ["b"]}, r"d\.jsonl:2: 'response' is list"),
        ({"prompt": "a", "response": "b", "references": "c"}, r"d\.jsonl:2: 'references' must"),
        ({"prompt": "a", "response": "b", "references": ["c", 1]}, r"'references' must be a list"),
        (
            {"messages": [{"role": "human", "content": "q"}, ANSWER]},
            r"d\.jsonl:2: message 0 has unknown role 'human'",
        ),
        (
            {"messages": [{"role": "user", "content": None}, ANSWER]},
            r"d\.jsonl:2: message 0 content is null",
        ),
    ],
)
def test_wrong_values_name_file_and_line(
    tmp_path: Path, record: dict[str, object], message: str
) -> None:
    good = json.dumps({"prompt": "ok", "response": "ok"})
    f = write(tmp_path / "d.jsonl", [good, json.dumps(record)])
    with pytest.raises(DataError, match=message):
        JsonlSource(str(f)).load()


def test_invalid_utf8_names_the_line(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_bytes(b'{"prompt": "a", "response": "b"}\n{"prompt": "caf\xe9", "response": "b"}\n')
    with pytest.raises(DataError, match=r"d\.jsonl:2: not valid UTF-8 .*re-save the file as UTF-8"):
        JsonlSource(str(f)).load()


def test_directory_and_unreadable_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(DataError, match="is a directory"):
        JsonlSource(str(tmp_path)).load()
    locked = write(tmp_path / "locked.jsonl", ['{"prompt": "a", "response": "b"}'])

    def denied(self: Path) -> bytes:  # what read_bytes raises on a mode-000 file (non-root)
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(DataError, match=r"cannot read .*locked\.jsonl \(Permission denied\)"):
        JsonlSource(str(locked)).load()


def test_generation_readers_split_on_newline_only(tmp_path: Path) -> None:
    from polylora.evaluate.evaluation import EvalReport
    from polylora.judge.runs import load_run_rows

    rows = [{"id": "p1", "prompt": "x", "samples": ["a\u2028b", "c\u0085d"], "greedy": "e\u2029f"}]
    path = EvalReport(metrics={}, rows=rows).write_jsonl(tmp_path / "generations.jsonl")
    assert "\u2028" in path.read_text(encoding="utf-8")  # written raw, not escaped
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("gen-readers")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(path), "eval")
    assert load_run_rows(run.info.run_id, uri) == rows
    from polylora.record.reader import load_generations

    assert load_generations(mlflow.MlflowClient(uri), run.info.run_id) == rows


def test_write_rows_writes_the_bytes_every_jsonl_writer_wrote(tmp_path: Path) -> None:
    """One object a line in key order, ``", "``/``": "`` separators, non-ASCII and U+2028 raw,
    NaN as ``NaN``, a trailing newline; the parent folder is created, and the lines read back."""
    from polylora.data.jsonl import read_lines, write_rows

    rows = [{"id": "p1", "b": 1, "a": {"y": "é\u2028✓", "x": float("nan")}}, {"z": None}]
    path = write_rows(iter(rows), tmp_path / "sub" / "rows.jsonl")
    expected = ('{"id": "p1", "b": 1, "a": {"y": "é\u2028✓", "x": NaN}}\n'
                '{"z": null}\n').encode()
    assert path.read_bytes() == expected
    assert [json.loads(line) for _, line in read_lines(path)][1] == rows[1]
