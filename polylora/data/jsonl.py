"""The user's own data: one JSON object per line (prompt/response or chat messages)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from polylora.data.example import Example
from polylora.errors import DataError

_KNOWN_KEYS = {"id", "prompt", "response", "messages", "group", "references"}


def _from_messages(messages: Any, where: str) -> tuple[tuple[dict[str, str], ...], str]:
    """Split chat messages into (messages before the last assistant turn, that turn's text)."""
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: 'messages' must be a non-empty list of {{role, content}}")
    for m in messages:
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise DataError(f"{where}: each message needs 'role' and 'content'")
    if messages[-1]["role"] != "assistant":
        raise DataError(f"{where}: the last message must be the assistant's answer")
    prompt = tuple({"role": str(m["role"]), "content": str(m["content"])} for m in messages[:-1])
    if not prompt:
        raise DataError(f"{where}: 'messages' needs at least one turn before the assistant's")
    return prompt, str(messages[-1]["content"])


def parse_record(record: Any, where: str, index: int) -> Example:
    """Turn one decoded JSON line into an Example; ``where`` is 'file:line' for errors."""
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "messages" in record:
        prompt, response = _from_messages(record["messages"], where)
    else:
        if "prompt" not in record:
            raise DataError(
                f"{where}: missing field 'prompt' (each line needs 'prompt' and 'response', "
                "or chat 'messages')"
            )
        if "response" not in record:
            raise DataError(f"{where}: missing field 'response'")
        prompt, response = str(record["prompt"]), str(record["response"])
    refs = record.get("references") or ()
    if isinstance(refs, str):
        refs = (refs,)
    group = record.get("group")
    return Example(
        id=str(record.get("id", f"line-{index:06d}")),
        prompt=prompt,
        response=response,
        group=None if group is None else str(group),
        references=tuple(str(r) for r in refs),
        fields={k: v for k, v in record.items() if k not in _KNOWN_KEYS},
    )


class JsonlSource:
    """Reads examples from a JSONL file; every problem names the file and line number."""

    def __init__(self, path: str) -> None:
        self.path = Path(path).expanduser()

    def load(self) -> list[Example]:
        """Parse the whole file; raise DataError on the first bad line."""
        if not self.path.is_file():
            raise DataError(f"data file not found: {self.path} (set data.path=FILE)")
        examples: list[Example] = []
        seen: set[str] = set()
        with self.path.open(encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                where = f"{self.path}:{lineno}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{where}: not valid JSON ({exc.msg})") from None
                ex = parse_record(record, where, lineno)
                if ex.id in seen:
                    raise DataError(f"{where}: duplicate id {ex.id!r}; ids must be unique")
                seen.add(ex.id)
                examples.append(ex)
        if not examples:
            raise DataError(f"{self.path} holds no examples (the file is empty)")
        return examples
