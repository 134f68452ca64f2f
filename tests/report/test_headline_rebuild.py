"""The headline statistics re-derived from the committed files (no MLflow store)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
from helpers import REPO
from scipy import stats as sps

from polylora.report import headline_rebuild as rb
from polylora.stats import significance as stats

RESULTS = REPO / "docs" / "results"


def test_three_seed_values_come_back_from_a_percentile_bootstrap_ci() -> None:
    values = [0.75, 43 / 60, 44 / 60]
    ci = stats.bootstrap_ci(values, n_resamples=10_000, seed=0)
    assert rb.recover_seed_values(ci.estimate, ci.low, ci.high) == pytest.approx(sorted(values))


def test_rebuild_pairs_the_seeds_and_matches_the_committed_files() -> None:
    result = rb.rebuild(RESULTS)
    p10 = result.effect(rb.CANDIDATE, "pass@10")
    ce = {"42": 0.75, "123": 43 / 60, "456": 44 / 60}  # the per-run table, exact grid
    poly = {"42": 0.75, "123": 42 / 60, "456": 50 / 60}
    seeds = sorted(ce)
    ref = sps.ttest_rel([poly[s] for s in seeds], [ce[s] for s in seeds])
    assert p10.seed_test.pvalue == pytest.approx(ref.pvalue)
    assert p10.role == "primary" and p10.verdict == "not shown"
    # the conservative crossed bound is wider than the seed term alone
    d = np.array([poly[s] - ce[s] for s in seeds])
    assert p10.se > d.std(ddof=1) / math.sqrt(3)
    assert result.excluded["sample_accuracy"].startswith("duplicate of pass@1")
    with (RESULTS / "headline_files" / "tests.csv").open() as f:
        committed = {r["metric"]: r for r in csv.DictReader(f)}
    for e in result.effects:
        row = committed[e.metric]
        assert float(row["delta"]) == pytest.approx(e.delta, abs=1e-12), e.metric
        assert row["verdict"] == e.verdict
