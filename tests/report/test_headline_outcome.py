"""Tests for polylora.report.headline_outcome: the outcome claims only what the declared
primary endpoint supports."""

from __future__ import annotations

import pytest

from polylora.report.headline_inputs import SummaryCell, TestCell
from polylora.report.headline_outcome import outcome


def cells(base: float, cand: float, metric: str = "pass@10") -> dict[tuple[str, str], SummaryCell]:
    return {(g, metric): SummaryCell(g, metric, True, 3, v, v - 0.05, v + 0.05, 60)
            for g, v in (("ce", base), ("poly", cand))}


def primary(verdict: str, low: float, high: float, metric: str = "pass@10") -> TestCell:
    return TestCell("poly", metric, "primary", "crossed seeds × prompts", 3, 60,
                    (low + high) / 2, low, high, 0.2, float("nan"), 0.08, verdict)


@pytest.mark.parametrize(("verdict", "low", "high", "answer"), [
    ("not shown", -0.05, 0.15, "**Answer: not shown on this task and budget.**"),
    ("confirmed", 0.01, 0.09, "**Answer: yes, on this task and budget.**"),
    ("opposite direction", -0.2, -0.1, "**Answer: no.**"),
])
def test_outcome_claims_only_what_the_primary_endpoint_supports(
    verdict: str, low: float, high: float, answer: str
) -> None:
    paras = outcome(cells(0.40, 0.45), [primary(verdict, low, high)], "ce", "poly")
    text = "\n".join(paras)
    assert paras[0].startswith(answer)
    assert f"[{low:+.3f}, {high:+.3f}]" in text and f"**{verdict}**" in text
    if verdict == "not shown":
        assert "can detect |Δ| ≥ 0.080 pass@10" in text
        assert "absence of evidence is not evidence of absence" in text
    assert "The old criterion" in text and "is not applied" in text


def test_outcome_without_a_declared_primary_is_undetermined() -> None:
    paras = outcome(cells(0.40, 0.45), [], "ce", "poly")
    assert paras[0].startswith("**Answer: undetermined.**")
