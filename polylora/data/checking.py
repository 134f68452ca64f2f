"""The checker protocol: a task-specific verdict on one generated answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from polylora.data.example import Example


@dataclass(frozen=True)
class CheckResult:
    """Whether an answer is correct, plus optional named sub-scores (e.g. per-field accuracy)."""

    correct: bool
    details: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Checker(Protocol):
    """Judges one answer to one example; pass@k and accuracy are computed from its verdicts."""

    name: str

    def __call__(self, example: Example, answer: str) -> CheckResult: ...
