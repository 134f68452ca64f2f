"""Builtin triage dataset: deterministic, consistent labels, groups, and the JSONL example."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from polylora.data.fields import FieldChecker, parse_fields
from polylora.data.splits import split_examples
from polylora.data.triage import (
    ALLOWED,
    FIELD_NAMES,
    generate_triage_examples,
    to_jsonl_record,
    write_jsonl,
)

DOC_EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "triage.jsonl"


def test_deterministic_for_a_seed_and_varies_across_seeds() -> None:
    a = generate_triage_examples(50, seed=3)
    b = generate_triage_examples(50, seed=3)
    assert [(e.id, e.prompt, e.response, e.group, e.fields) for e in a] == [
        (e.id, e.prompt, e.response, e.group, e.fields) for e in b
    ]
    assert [e.prompt for e in generate_triage_examples(50, seed=4)] != [e.prompt for e in a]


def test_examples_are_well_formed_and_labels_are_consistent() -> None:
    examples = generate_triage_examples()
    assert len(examples) == 300
    assert len({e.id for e in examples}) == 300
    checker = FieldChecker(list(FIELD_NAMES))
    for e in examples:
        assert set(e.fields) == set(FIELD_NAMES)
        assert all(e.fields[k] in ALLOWED[k] for k in FIELD_NAMES)
        assert parse_fields(e.response, list(FIELD_NAMES)) == e.fields
        assert "one of: critical, high, medium, low" in e.prompt  # the field instruction
        assert checker(e, e.response).correct
    for name in FIELD_NAMES:  # every label value occurs
        assert set(Counter(e.fields[name] for e in examples)) == set(ALLOWED[name])


def test_reports_carry_their_cues() -> None:
    crash_words = ("crash", "data loss", "lose data", "security")
    cosmetic_words = ("typo", "cosmetic", "wording", "blurry")
    for e in generate_triage_examples(200, seed=1):
        text = e.prompt.lower()
        if e.fields["severity"] == "critical":
            assert any(w in text for w in crash_words)
        if e.fields["severity"] == "low":
            assert any(w in text for w in cosmetic_words)
        if e.fields["reproducibility"] == "once":
            assert "once" in text or "single time" in text or "one-off" in text


def test_groups_support_a_group_split() -> None:
    examples = generate_triage_examples()
    groups = Counter(e.group for e in examples)
    assert len(groups) >= 10 and max(groups.values()) > 1
    splits = split_examples(examples, 0.8, 0.1, 0.1, seed=0, group_by="group")
    assert all(n >= 1 for n in splits.report()["groups"].values())


def test_jsonl_record_and_writer(tmp_path: Path) -> None:
    examples = generate_triage_examples(5)
    record = to_jsonl_record(examples[0])
    assert list(record)[:4] == ["id", "prompt", "response", "group"]
    assert {k: record[k] for k in FIELD_NAMES} == examples[0].fields
    path = write_jsonl(examples, tmp_path / "sub" / "t.jsonl")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [to_jsonl_record(e) for e in examples]


def test_docs_example_matches_the_generator() -> None:
    lines = DOC_EXAMPLE.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 20
    expected = [to_jsonl_record(e) for e in generate_triage_examples()[:20]]
    assert [json.loads(line) for line in lines] == expected
