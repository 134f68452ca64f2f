"""Number formatting of the headline report: means, durations (p-values and signed effects:
:mod:`polylora.render.markdown`)."""

from __future__ import annotations

import math

from polylora.report.headline_inputs import SummaryCell

__all__ = ["ci_cell", "duration", "num"]


def num(x: float, digits: int = 3) -> str:
    """``x`` with ``digits`` decimals; – for NaN/None, ±∞ for infinities."""
    if x is None or not math.isfinite(x):
        return "–" if x is None or math.isnan(x) else ("∞" if x > 0 else "−∞")
    return f"{x:.{digits}f}"


def duration(seconds: float) -> str:
    """Seconds below two minutes, minutes above; – when missing."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def ci_cell(s: SummaryCell | None) -> str:
    """``mean [low, high]`` of a summary cell; – without runs."""
    if s is None or s.n_runs == 0:
        return "–"
    return f"{num(s.mean)} [{num(s.low)}, {num(s.high)}]"
