"""The overfitting decision matrix: a run's curves and recorded settings in, findings, a
verdict and the next command out.

:mod:`.inputs` (what it reads), :mod:`.findings` (what it says), :mod:`.context` (the shared
numbers and commands), :mod:`.rules` (one function per rule), :mod:`.matrix`
(:func:`diagnose`), :mod:`.columns` (the columns read from the configs).
"""

from __future__ import annotations

from polylora.data.size_buckets import (
    BUCKET_LARGE,
    BUCKET_SMALL,
    BUCKET_STANDARD,
    dataset_size_bucket,
)
from polylora.report.diagnose.columns import load_columns
from polylora.report.diagnose.context import (
    COMMAND_PREFIX,
    DIVERSITY_WEIGHT_OVERRIDE,
    EPOCHS_OVERRIDE,
    RANK32_OVERRIDE,
    SEED_OVERRIDE,
    SEEDS,
)
from polylora.report.diagnose.findings import Diagnosis, Finding
from polylora.report.diagnose.inputs import Columns, RunCurves, Thresholds
from polylora.report.diagnose.matrix import diagnose

__all__ = [
    "BUCKET_LARGE",
    "BUCKET_SMALL",
    "BUCKET_STANDARD",
    "COMMAND_PREFIX",
    "DIVERSITY_WEIGHT_OVERRIDE",
    "EPOCHS_OVERRIDE",
    "RANK32_OVERRIDE",
    "SEEDS",
    "SEED_OVERRIDE",
    "Columns",
    "Diagnosis",
    "Finding",
    "RunCurves",
    "Thresholds",
    "dataset_size_bucket",
    "diagnose",
    "load_columns",
]
