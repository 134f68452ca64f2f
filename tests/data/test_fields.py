"""Structured fields: canonical formatting, lenient parsing, the checker and its summary."""

from __future__ import annotations

import pytest

from polylora.data.checking import Checker, CheckResult
from polylora.data.example import Example
from polylora.data.fields import (
    FieldChecker,
    fields_instruction,
    format_fields,
    normalize_value,
    parse_fields,
)
from polylora.errors import ConfigError, DataError

NAMES = ["severity", "component", "reproducibility"]
EXPECTED = {"severity": "high", "component": "ui", "reproducibility": "always"}


def test_format_fields_is_canonical_and_round_trips() -> None:
    text = format_fields({"severity": "high", "component": " ui  layer ", "reproducibility": 1})
    assert text == "severity: high\ncomponent: ui layer\nreproducibility: 1"
    assert parse_fields(text, NAMES) == {
        "severity": "high",
        "component": "ui layer",
        "reproducibility": "1",
    }


def test_fields_instruction_lists_fields_and_allowed_values() -> None:
    text = fields_instruction(NAMES, {"severity": ["critical", "high", "medium", "low"]})
    assert "`name: value`" in text
    assert "- severity (one of: critical, high, medium, low)" in text
    assert "- component" in text and "- reproducibility" in text
    assert fields_instruction(["x"]).endswith("- x")


@pytest.mark.parametrize(
    "text",
    [
        "severity: high\ncomponent: ui\nreproducibility: always",  # well-formed
        "Reproducibility: Always\nSeverity: HIGH\nComponent: UI",  # reordered, case
        "severity = high\ncomponent = ui\nreproducibility = always.",  # '=' and punctuation
        "**Severity**: High\n- **Component:** UI\n* __Reproducibility__: `always`",  # markdown
        "Here you go:\n1. severity: high,\n2. component: ui;\n3. reproducibility: always!",
        "severity: high, component: ui, reproducibility: always",  # one line
        "Severity: high | Component: ui | Reproducibility: always",
        '{"severity": "High", "component": "UI", "reproducibility": "always"}',  # JSON
        'Answer: {"Reproducibility": "always", "Component": "ui", "SEVERITY": "high"} done',
        '```json\n{\n  "severity": "high",\n  "component": "ui",\n  "reproducibility": '
        '"always"\n}\n```',  # fenced JSON
        '```\n{"triage": {"severity": "high", "component": "ui", "reproducibility": "always"}}'
        "\n```",  # nested JSON
        "{'severity': 'high', 'component': 'ui', 'reproducibility': 'always'}",  # python dict
        '{"severity": "high"}\nComponent: ui\nreproducibility: always',  # JSON + lines
    ],
)
def test_parse_fields_accepts_common_formats(text: str) -> None:
    assert parse_fields(text, NAMES) == EXPECTED


def test_parse_fields_partially_missing_gives_none() -> None:
    assert parse_fields("Severity: critical\nNo idea about the rest.", NAMES) == {
        "severity": "critical",
        "component": None,
        "reproducibility": None,
    }
    assert parse_fields('{"severity": null, "component": "api"}', NAMES) == {
        "severity": None,
        "component": "api",
        "reproducibility": None,
    }
    assert parse_fields("severity:\ncomponent: ui", NAMES)["severity"] is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        "I think this bug is pretty bad and should be fixed soon.",
        "The severity is high and it is about the UI.",  # no key/value separator
        "{not json at all: [",
        "{}",
        '{"unrelated": 1}',
        "severityx: high\nsubcomponent: ui",  # other keys that merely contain the names
    ],
)
def test_parse_fields_garbage_gives_all_none(text: str) -> None:
    assert parse_fields(text, NAMES) == dict.fromkeys(NAMES)


def test_parse_fields_keys_with_spaces_and_first_occurrence_wins() -> None:
    names = ["bug_severity", "affected component"]
    text = "Bug Severity: Low\naffected-component: installer\nbug severity: high"
    assert parse_fields(text, names) == {"bug_severity": "low", "affected component": "installer"}


def test_normalize_value() -> None:
    assert normalize_value("  **High**. ") == "high"
    assert normalize_value('"Data  Loss"!') == "data loss"
    assert normalize_value("") is None and normalize_value("  .. ") is None
    assert normalize_value(None) is None
    assert normalize_value(True) == "true" and normalize_value(3) == "3"


def make_example(fields: dict | None = None, response: str = "") -> Example:
    return Example(id="ex-1", prompt="p", response=response, fields=fields or {})


def test_field_checker_against_fields_and_against_response() -> None:
    checker = FieldChecker(NAMES)
    assert isinstance(checker, Checker) and checker.name == "fields"
    from_fields = make_example({"severity": "High", "component": "ui", "reproducibility": "always"})
    from_response = make_example(response=format_fields(EXPECTED))
    for example in (from_fields, from_response):
        ok = checker(example, "Severity: high\nComponent: UI\nReproducibility: always")
        assert ok == CheckResult(
            correct=True,
            details={
                "field_acc/severity": 1.0,
                "field_acc/component": 1.0,
                "field_acc/reproducibility": 1.0,
                "field_acc/mean": 1.0,
            },
        )
        partial = checker(example, "severity: low\ncomponent: ui")
        assert not partial.correct
        assert partial.details == {
            "field_acc/severity": 0.0,
            "field_acc/component": 1.0,
            "field_acc/reproducibility": 0.0,
            "field_acc/mean": 1 / 3,
        }
        assert not checker(example, "no idea").correct


def test_field_checker_errors() -> None:
    with pytest.raises(ConfigError):
        FieldChecker([])
    with pytest.raises(ConfigError):
        FieldChecker("severity")  # a bare string is a likely config slip
    with pytest.raises(DataError, match=r"'ex-1'.*'component'"):
        FieldChecker(NAMES)(make_example({"severity": "high"}), "severity: high")
