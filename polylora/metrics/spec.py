"""A metric's declaration: name, direction, inputs, per-prompt function and aggregation.

Kept apart from the registry so the builtin metrics (:mod:`polylora.metrics.builtin`) can be
declared without importing the registry that holds them.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from polylora.metrics.inputs import INPUT_FIELDS, PromptGenerations

#: What a metric consumes. ``model`` (an LM forward pass) and ``judge`` (an LLM judge) metrics
#: are computed by the evaluation pipeline / judge module, not by :mod:`polylora.metrics.suite`.
NEEDS_VOCABULARY: frozenset[str] = frozenset(
    {"samples", "references", "checker", "greedy", "model", "judge"}
)


def mean_over_prompts(values: Sequence[float]) -> float:
    """The default aggregation: the mean of the prompts' values, NaNs (undefined) left out."""
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else math.nan


@dataclass(frozen=True)
class MetricSpec:
    """A metric: name, direction, inputs, and (for metrics the suite computes) its function.

    ``compute`` takes fields of :class:`~polylora.metrics.inputs.PromptInputs` by parameter
    name and returns the prompt's value; ``aggregate`` turns the prompts' values into the run's
    (default: their mean). ``proportion`` metrics also get a ``<name>_moe`` margin of error.
    ``embeds`` names the texts of a prompt the metric reads embeddings of (encoded in one batch
    with every other metric's), ``batch`` runs once over all prompts (its per-prompt results
    arrive as ``batched``). ``min_samples``/``pairwise`` are checked before scoring.
    """

    name: str
    higher_is_better: bool
    needs: frozenset[str]
    description: str
    compute: Callable[..., float] | None = field(default=None, compare=False)
    aggregate: Callable[[Sequence[float]], float] = field(
        default=mean_over_prompts, compare=False
    )
    proportion: bool = False
    min_samples: int = 0
    pairwise: bool = False
    #: Compares answers with each other: the suite hands it the samples as the task's checker
    #: reads them (the data source's ``normalize`` hook), so "Apple." and "apple" are one answer.
    compares_answers: bool = False
    embeds: Callable[[PromptGenerations], list[str]] | None = field(default=None, compare=False)
    batch: Callable[[Sequence[PromptGenerations]], list[Any]] | None = field(
        default=None, compare=False
    )

    def __post_init__(self) -> None:
        unknown = set(self.needs) - NEEDS_VOCABULARY
        if unknown:
            raise ValueError(
                f"metric {self.name!r}: unknown needs {sorted(unknown)}; "
                f"use a subset of {sorted(NEEDS_VOCABULARY)}"
            )
        if self.compute is not None:
            object.__setattr__(self, "_params", function_inputs(self.compute, self.name))

    @property
    def computed_in_suite(self) -> bool:
        """False for model- or judge-based metrics, which the evaluation pipeline computes."""
        return not ({"model", "judge"} & self.needs)

    @property
    def inputs(self) -> tuple[str, ...]:
        """The parameter names ``compute`` takes (fields of ``PromptInputs``)."""
        return tuple(getattr(self, "_params", ()))


def function_inputs(fn: Callable[..., Any], name: str) -> tuple[str, ...]:
    """The parameters ``fn`` takes; each must be a ``PromptInputs`` field (ValueError if not)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError) as err:
        raise ValueError(f"metric {name!r}: cannot read the signature of {fn!r}: {err}") from err
    names = tuple(p.name for p in params)
    bad = [
        p.name for p in params
        if p.name not in INPUT_FIELDS
        or p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]  # fmt: skip
    if bad:
        raise ValueError(
            f"metric {name!r}: its function takes {', '.join(bad)}, which the suite cannot "
            f"pass; a metric function takes some of {', '.join(sorted(INPUT_FIELDS))} by name"
        )
    return names
