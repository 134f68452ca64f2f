"""Sharpening measured apart from accuracy: how many of a prompt's samples are correct, how many
different correct answers there are per correct sample, and pass@k at every k up to the samples
per prompt (the curve, where a crossover against another run shows).

"Distinct correct answers" alone rises whenever accuracy rises (more correct samples, more
chances to differ); distinct answers *per correct sample* falls when a policy concentrates on
fewer answers, whatever its accuracy. Answers are compared as the task's checker reads them
(the data source's ``normalize`` hook, e.g. the lower-cased first word of the word task).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from polylora.data.checking import CheckResult

#: The per-prompt sharpening metrics, computed on every evaluation that checks its samples.
SHARPENING_METRICS: tuple[str, ...] = ("correct_samples", "distinct_correct",
                                       "distinct_per_correct")


def correct_samples(sample_checks: list[CheckResult]) -> float:
    """How many of the prompt's samples the checker accepted."""
    return float(sum(c.correct for c in sample_checks))


def distinct_correct(samples: list[str], sample_checks: list[CheckResult]) -> float:
    """How many different answers (as normalized) among the accepted samples."""
    return float(len({s for s, c in zip(samples, sample_checks, strict=True) if c.correct}))


def distinct_per_correct(samples: list[str], sample_checks: list[CheckResult]) -> float:
    """Different correct answers per correct sample (1: every correct sample differs; lower:
    the correct samples repeat a few answers); undefined (NaN) without a correct sample."""
    count = correct_samples(sample_checks)
    return distinct_correct(samples, sample_checks) / count if count else math.nan


def curve_ks(sample_counts: Sequence[int]) -> list[int]:
    """Every k of the pass@k curve: 1 … the fewest samples any prompt has."""
    return list(range(1, min(sample_counts) + 1)) if sample_counts else []
