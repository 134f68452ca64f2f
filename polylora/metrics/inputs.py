"""What a metric function may read: one prompt's generations, references and checker verdicts.

A metric's implementation is a plain function whose parameter names are fields of
:class:`PromptInputs` (``def my_metric(samples, references) -> float``); the suite passes only
the fields it names. The evaluation pipeline hands the suite :class:`PromptGenerations`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from polylora.data.checking import CheckResult
from polylora.data.example import Example


@dataclass
class PromptGenerations:
    """One prompt's generations: n sampled answers and, optionally, the greedy answer."""

    example: Example
    samples: list[str]
    greedy: str | None = None

    @property
    def scored_answers(self) -> list[str]:
        """The answers reference-based metrics average over: the samples, else the greedy one."""
        if self.samples:
            return list(self.samples)
        return [self.greedy] if self.greedy is not None else []


@dataclass(frozen=True)
class PromptInputs:
    """Everything a metric function can ask for, for one prompt (by parameter name)."""

    example: Example
    samples: list[str]
    greedy: str | None
    answers: list[str]  # the samples, else the greedy answer
    references: list[str]
    sample_checks: list[CheckResult]  # empty unless a selected metric needs checked samples
    greedy_check: CheckResult | None
    vectors: Mapping[str, np.ndarray] = field(default_factory=dict)  # text → MiniLM embedding
    batched: Any = None  # this prompt's share of the metric's batched step (e.g. BERTScore)


#: Parameter names a metric function may take.
INPUT_FIELDS: frozenset[str] = frozenset(f.name for f in fields(PromptInputs))

#: The ``needs`` each parameter implies (what the suite must provide to call the function).
NEEDS_OF_INPUT: dict[str, frozenset[str]] = {
    "example": frozenset(),
    "samples": frozenset({"samples"}),
    "greedy": frozenset({"greedy"}),
    "answers": frozenset({"samples"}),
    "references": frozenset({"references"}),
    "sample_checks": frozenset({"samples", "checker"}),
    "greedy_check": frozenset({"greedy", "checker"}),
    "vectors": frozenset(),
    "batched": frozenset(),
}
