"""0/1 rewards of sampled answers from the task checker (shared by the grpo and passk scorers)."""

from __future__ import annotations

from collections.abc import Sequence

from polylora.data.checking import Checker
from polylora.data.example import Example
from polylora.errors import ConfigError


def checker_rewards(
    checker: Checker | None, examples: Sequence[Example], texts: list[list[str]]
) -> list[list[float]]:
    """1.0 for each sample the checker accepts, else 0.0 (one ``check_batch`` call per prompt
    when the checker has one)."""
    if checker is None:
        raise ConfigError("this objective rewards correct answers and needs a task checker")
    batch = getattr(checker, "check_batch", None)
    out = []
    for example, samples in zip(examples, texts, strict=True):
        results = (list(batch([(example, s) for s in samples])) if callable(batch)
                   else [checker(example, s) for s in samples])
        out.append([1.0 if r.correct else 0.0 for r in results])
    return out


def require_checker(has_checker: bool, name: str) -> None:
    """The one-line error for a checker-rewarded objective on data without a checker."""
    if not has_checker:
        raise ConfigError(
            f"objective {name} rewards correct answers but the data has no checker "
            "(data=words has one); use objective=polychromic with "
            "objective.quality=reference_similarity for data without one"
        )
