"""Markdown tables for every report polylora writes: one escaping rule, one row format, one
format for signed effects and p-values."""

from __future__ import annotations

import math
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


def signed(x: float | None, digits: int = 3) -> str:
    """A signed number for a table (an effect Δ): ``+0.123``; – when missing, ±∞ kept."""
    if x is None or math.isnan(x):
        return "–"
    if math.isinf(x):
        return "+∞" if x > 0 else "−∞"
    return f"{x:+.{digits}f}"


def pval(x: float | None) -> str:
    """A p-value for a table: 4 decimals, scientific below 1e-4; – when missing."""
    if x is None or math.isnan(x):
        return "–"
    return f"{x:.2e}" if x < 1e-4 else f"{x:.4f}"
