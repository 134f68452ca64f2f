"""The user's own data: one JSON object per line (prompt/response or chat messages).

Strict about what is wrong, forgiving about what is valid. Accepted: UTF-8 with or without a
byte-order mark, LF or CRLF line ends, blank lines, U+2028 / U+2029 / U+0085 inside strings
(lines are split on "\\n" only, never with ``str.splitlines``), prompts of any length.
Rejected with one ``FILE:LINE: problem; fix`` message: invalid UTF-8, invalid JSON, a line that
is not an object, a missing / null / non-string ``prompt`` or ``response``, ``references`` that
is not a list of strings, chat messages with unknown roles or non-string content, duplicate
ids, and a path that is a directory or cannot be read.

Every JSONL file the project writes (generations, judge verdicts, generated data) goes through
:func:`write_rows`, so what is written is what :func:`read_lines` reads.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from polylora.data.example import Example
from polylora.errors import DataError

_KNOWN_KEYS = {"id", "prompt", "response", "messages", "group", "references"}
CHAT_ROLES = ("system", "user", "assistant")


def _text_field(record: dict[str, Any], key: str, where: str) -> str:
    """``record[key]`` as a string; missing, null or non-string values are errors."""
    if key not in record:
        hint = (
            " (each line needs 'prompt' and 'response', or chat 'messages')"
            if key == "prompt"
            else ""
        )
        raise DataError(f"{where}: missing field '{key}'{hint}")
    value = record[key]
    if not isinstance(value, str):
        shown = "null" if value is None else type(value).__name__
        raise DataError(
            f"{where}: '{key}' is {shown}, it must be a string; write the text in quotes "
            f'(e.g. "{key}": "...") or drop the line'
        )
    return value


def _from_messages(messages: Any, where: str) -> tuple[tuple[dict[str, str], ...], str]:
    """Split chat messages into (messages before the last assistant turn, that turn's text)."""
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: 'messages' must be a non-empty list of {{role, content}}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise DataError(f"{where}: message {i} needs 'role' and 'content'")
        if m["role"] not in CHAT_ROLES:
            raise DataError(
                f"{where}: message {i} has unknown role {m['role']!r}; use one of "
                f"{', '.join(CHAT_ROLES)}"
            )
        if not isinstance(m["content"], str):
            shown = "null" if m["content"] is None else type(m["content"]).__name__
            raise DataError(f"{where}: message {i} content is {shown}, it must be a string")
    if messages[-1]["role"] != "assistant":
        raise DataError(f"{where}: the last message must be the assistant's answer")
    prompt = tuple({"role": m["role"], "content": m["content"]} for m in messages[:-1])
    if not prompt:
        raise DataError(f"{where}: 'messages' needs at least one turn before the assistant's")
    return prompt, messages[-1]["content"]


def _references(record: dict[str, Any], where: str) -> tuple[str, ...]:
    refs = record.get("references")
    if refs is None:
        return ()
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise DataError(
            f"{where}: 'references' must be a list of strings (acceptable answers), e.g. "
            '"references": ["one answer", "another"]'
        )
    return tuple(refs)


def parse_record(record: Any, where: str, index: int) -> Example:
    """Turn one decoded JSON line into an Example; ``where`` is 'file:line' for errors."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    prompt: str | tuple[dict[str, str], ...]
    if "messages" in record:
        prompt, response = _from_messages(record["messages"], where)
    else:
        prompt = _text_field(record, "prompt", where)
        response = _text_field(record, "response", where)
    group = record.get("group")
    return Example(
        id=str(record.get("id", f"line-{index:06d}")),
        prompt=prompt,
        response=response,
        group=None if group is None else str(group),
        references=_references(record, where),
        fields={k: v for k, v in record.items() if k not in _KNOWN_KEYS},
    )


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each non-blank line, split on "\\n" only; a BOM and CR line
    ends are dropped. Invalid UTF-8 and unreadable paths raise DataError naming the file."""
    if path.is_dir():
        raise DataError(f"{path} is a directory; set data.path to a .jsonl file inside it")
    if not path.exists():
        raise DataError(f"data file not found: {path} (set data.path=FILE)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(
            f"cannot read {path} ({exc.strerror or type(exc).__name__}); check its permissions"
        ) from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    for lineno, chunk in enumerate(raw.split(b"\n"), start=1):
        try:
            line = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{path}:{lineno}: not valid UTF-8 (byte {chunk[exc.start]:#04x} at column "
                f"{exc.start + 1}); re-save the file as UTF-8"
            ) from None
        line = line.removesuffix("\r")
        if line.strip():
            yield lineno, line


def write_rows(rows: Iterable[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write ``rows`` as JSONL: one JSON object a line, UTF-8, non-ASCII kept as is, each line
    ending in "\\n"; creates the parent folder and returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return out


def load_jsonl_examples(path: Path) -> list[Example]:
    """Parse a whole JSONL file into examples; raise DataError on the first bad line."""
    examples: list[Example] = []
    seen: set[str] = set()
    for lineno, line in read_lines(path):
        where = f"{path}:{lineno}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        ex = parse_record(record, where, lineno)
        if ex.id in seen:
            raise DataError(f"{where}: duplicate id {ex.id!r}; ids must be unique")
        seen.add(ex.id)
        examples.append(ex)
    if not examples:
        raise DataError(f"{path} holds no examples (the file is empty)")
    return examples


class JsonlSource:
    """Reads examples from a JSONL file; every problem names the file and line number."""

    def __init__(self, path: str) -> None:
        self.path = Path(path).expanduser()

    def load(self) -> list[Example]:
        """Parse the whole file; raise DataError on the first bad line."""
        return load_jsonl_examples(self.path)
