"""Process memory: the peak resident set size, logged per run (``run/peak_rss_mb``) and at
phase ends (``run/peak_rss_mb_after_<phase>``) so a run's MLflow record shows which phase
raised it."""

from __future__ import annotations

import resource
import sys


def peak_rss_mb() -> float:
    """The highest resident set size this process has had so far, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes vs KiB


def phase_metric(phase: str) -> dict[str, float]:
    """``{"run/peak_rss_mb_after_<phase>": peak so far}`` (the running peak, monotone)."""
    return {f"run/peak_rss_mb_after_{phase}": peak_rss_mb()}
