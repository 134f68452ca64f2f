"""Structured-field tasks (e.g. bug triage: severity / component / reproducibility).

The training response is a canonical block of ``key: value`` lines; model answers are parsed
leniently (JSON anywhere, fenced JSON, ``key: value`` / ``key = value`` / ``**Key**: value``
lines) so that formatting slips are not scored as wrong labels.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from polylora.data.checking import CheckResult
from polylora.data.example import Example
from polylora.errors import ConfigError, DataError

_MARKUP = "*`\"'"
_TRAILING = ".,;:!?"
_CLOSERS = {"}": "{", "]": "[", ")": "("}


def format_fields(values: Mapping[str, Any]) -> str:
    """Canonical ``key: value`` lines (in the mapping's order): the training response."""
    lines = []
    for key, value in values.items():
        text = " ".join(str(value).split())
        lines.append(f"{key}: {text}")
    return "\n".join(lines)


def fields_instruction(
    field_names: Sequence[str], allowed: Mapping[str, Sequence[str]] | None = None
) -> str:
    """Text appended to the prompt asking for the fields, listing allowed values when known."""
    lines = ["Answer with exactly these fields, one per line, formatted as `name: value`:"]
    for name in field_names:
        options = (allowed or {}).get(name)
        if options:
            lines.append(f"- {name} (one of: {', '.join(options)})")
        else:
            lines.append(f"- {name}")
    return "\n".join(lines)


def normalize_key(key: str) -> str:
    """Compare keys case- and separator-insensitively: ``**Bug Severity**`` -> ``bug_severity``."""
    key = key.strip().strip(_MARKUP + "_").strip()
    return re.sub(r"[\s_\-]+", "_", key.lower())


def normalize_value(value: Any) -> str | None:
    """Lowercase, trim whitespace, markup, quotes and trailing punctuation; empty -> None."""
    if value is None:
        return None
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (list, dict)):
        text = json.dumps(value, sort_keys=True)
    else:
        text = str(value)
    previous = None
    while text != previous:
        previous = text
        text = text.strip().strip(_MARKUP).rstrip(_TRAILING)
        if text and text[-1] in _CLOSERS and _CLOSERS[text[-1]] not in text:
            text = text[:-1]
    text = " ".join(text.lower().split())
    return text or None


def parse_fields(text: str, field_names: Sequence[str]) -> dict[str, str | None]:
    """Extract each named field from free-form model output; fields not found are None.

    A JSON object holding any of the fields wins; fields it lacks are then looked up as
    ``key: value`` / ``key = value`` lines (markdown bold, bullets and several fields on one
    line separated by ``,``/``;``/``|`` are accepted). Keys match case-insensitively and the
    values come back normalized (see ``normalize_value``).
    """
    result: dict[str, str | None] = {name: None for name in field_names}
    if not field_names or not isinstance(text, str):
        return result
    wanted = {normalize_key(name): name for name in field_names}
    found = _find_json_fields(text, wanted) or {}
    settled = {wanted[key] for key in found}  # an explicit JSON null stays None
    for key, value in found.items():
        result[wanted[key]] = normalize_value(value)
    all_keys = "|".join(_key_pattern(name) for name in field_names)
    for name in field_names:
        if name in settled:
            continue
        for match in _line_pattern(name, all_keys).finditer(text):
            value = normalize_value(match.group("value"))
            if value is not None:
                result[name] = value
                break
    return result


class FieldChecker:
    """Correct iff every named field in the answer matches the example's expected value.

    Expected values come from ``example.fields[name]`` or, failing that, are parsed from
    ``example.response``; ``details`` holds ``field_acc/<name>`` = 1.0 or 0.0 per field.
    """

    name = "fields"

    def __init__(self, field_names: Sequence[str]) -> None:
        if isinstance(field_names, str) or not field_names:
            raise ConfigError(
                f"FieldChecker needs a non-empty list of field names, got {field_names!r}; "
                "list the fields to check, e.g. [severity, component]"
            )
        self.field_names: list[str] = list(field_names)

    def expected(self, example: Example) -> dict[str, str]:
        """The normalized expected value of each field for ``example``."""
        parsed: dict[str, str | None] | None = None
        out: dict[str, str] = {}
        for name in self.field_names:
            value = normalize_value(example.fields.get(name))
            if value is None:
                if parsed is None:
                    parsed = parse_fields(example.response, self.field_names)
                value = parsed[name]
            if value is None:
                raise DataError(
                    f"example {example.id!r} has no expected value for field {name!r} "
                    "(not in its fields and not parseable from its response); "
                    f"add a {name!r} key to that example"
                )
            out[name] = value
        return out

    def __call__(self, example: Example, answer: str) -> CheckResult:
        expected = self.expected(example)
        predicted = parse_fields(answer, self.field_names)
        details = {
            f"field_acc/{name}": float(predicted[name] == expected[name])
            for name in self.field_names
        }
        correct = all(v == 1.0 for v in details.values())
        details["field_acc/mean"] = sum(details.values()) / len(details)
        return CheckResult(correct=correct, details=details)




# --- parsing helpers ----------------------------------------------------------------------


def _json_objects(text: str) -> Iterator[dict[str, Any]]:
    """Every JSON object that decodes starting at some ``{`` in the text, outermost first."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        try:
            obj, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(obj, dict):
            yield obj


def _find_json_fields(text: str, wanted: Mapping[str, str]) -> dict[str, Any] | None:
    """Field values (by normalized key) from the first JSON object holding any wanted key."""
    for obj in _json_objects(text):
        found = _match_keys(obj, wanted, depth=0)
        if found:
            return found
    return None


def _match_keys(obj: dict[str, Any], wanted: Mapping[str, str], depth: int) -> dict[str, Any]:
    found = {normalize_key(str(k)): v for k, v in obj.items() if normalize_key(str(k)) in wanted}
    if found or depth >= 2:
        return found
    for value in obj.values():  # e.g. {"triage": {"severity": ...}}
        if isinstance(value, dict):
            nested = _match_keys(value, wanted, depth + 1)
            if nested:
                return nested
    return {}


def _key_pattern(name: str) -> str:
    parts = [re.escape(p) for p in re.split(r"[\s_\-]+", name.strip()) if p]
    return r"[\s_\-]+".join(parts)


_LINE_CACHE: dict[tuple[str, str], re.Pattern[str]] = {}


def _line_pattern(name: str, all_keys: str) -> re.Pattern[str]:
    cached = _LINE_CACHE.get((name, all_keys))
    if cached is not None:
        return cached
    markup = r"[*_`\"']*"
    pattern = re.compile(
        r"(?:^|(?<=[\s,;|{(\[>]))"  # start of line or after a separator / bullet / space
        + markup
        + rf"(?:{_key_pattern(name)})"
        + markup
        + r"[ \t]*[:=][ \t]*"
        + r"(?P<value>[^\n]*?)"
        # the value ends at the end of the line or where another field starts on the same line
        + rf"[ \t]*(?=$|[,;|][ \t]*{markup}(?:{all_keys}){markup}[ \t]*[:=])",
        re.IGNORECASE | re.MULTILINE,
    )
    if len(_LINE_CACHE) < 256:
        _LINE_CACHE[(name, all_keys)] = pattern
    return pattern
