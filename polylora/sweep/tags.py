"""The tags and names that tie a sweep's MLflow runs to its Optuna study: trial and study
tags, the parent run id (as a tag and through ``POLYLORA_PARENT_RUN_ID``), study names and the
overrides that carry them into each trial's run.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from polylora.config.overrides import hydra_quote
from polylora.record.names import (
    ERROR_ATTR,
    PARENT_ATTR,
    PARENT_TAG,
    ROLE_TAG,
    STUDY_TAG,
    SWEEPER_ATTR,
    TRIAL_TAG,
    study_name,
)
from polylora.record.tracking import PARENT_RUN_ENV

__all__ = ["ERROR_ATTR", "PARENT_ATTR", "PARENT_RUN_ENV", "PARENT_TAG", "ROLE_TAG",
           "STUDY_TAG", "SUMMARY_CSV", "SUMMARY_MD", "SWEEPER_ATTR", "TRIAL_TAG",
           "parent_env", "study_name", "trial_overrides"]

SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"


def trial_overrides(trial: int, study: str, parent_run_id: str | None,
                    name_runs: bool = True) -> list[str]:
    """Overrides that tag a trial's MLflow run (merged into ``tracking.tags``) and, with
    ``name_runs``, name it ``<study>-trial-<N>``.

    Passing the parent id as a tag (not only through ``POLYLORA_PARENT_RUN_ID``) makes a
    trial a child run whatever process or machine it runs in (joblib, Slurm, Ray).
    """
    tags = {TRIAL_TAG: str(trial), STUDY_TAG: study}
    if parent_run_id:
        tags[PARENT_TAG] = parent_run_id
    body = ", ".join(f"{k}:{hydra_quote(v)}" for k, v in tags.items())
    out = [f"++tracking.tags={{{body}}}"]
    if name_runs:
        out.append(f"tracking.run_name={hydra_quote(f'{study}-trial-{trial}')}")
    return out


@contextlib.contextmanager
def parent_env(run_id: str | None) -> Iterator[None]:
    """Set ``POLYLORA_PARENT_RUN_ID`` for trials started from this process (restored after)."""
    previous = os.environ.get(PARENT_RUN_ENV)
    if run_id:
        os.environ[PARENT_RUN_ENV] = run_id
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PARENT_RUN_ENV, None)
        else:
            os.environ[PARENT_RUN_ENV] = previous
