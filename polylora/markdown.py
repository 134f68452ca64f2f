"""Markdown tables for every report polylora writes: one escaping rule, one row format."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def cell(value: object) -> str:
    """One table cell: ``|`` escaped and newlines folded, so a message cannot break the row."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def row(cells: Iterable[object]) -> str:
    """One table row: ``| a | b |``."""
    return "| " + " | ".join(cell(c) for c in cells) + " |"


def table(header: Sequence[object], rows: Iterable[Iterable[object]]) -> list[str]:
    """A header row, its separator and the rows, as lines (callers join them)."""
    return [row(header), "|" + "---|" * len(header), *(row(r) for r in rows)]
