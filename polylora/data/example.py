"""The one record type every data source produces and every later stage consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Example:
    """One prompt/response pair.

    ``prompt`` is the user's text (or, for chat data, the messages before the final assistant
    turn); ``response`` is the target answer. ``references`` are acceptable answers used by
    reference-based metrics (defaults to ``[response]``). ``fields`` holds any extra JSON
    fields (used for stratification, partitioning, structured-field checking).
    """

    id: str
    prompt: str | tuple[dict[str, str], ...]
    response: str
    group: str | None = None
    references: tuple[str, ...] = ()
    fields: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def all_references(self) -> tuple[str, ...]:
        """Acceptable answers: the explicit references, else the response itself."""
        return self.references or (self.response,)
