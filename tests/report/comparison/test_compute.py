"""The comparison's statistics against scipy and hand computation, on synthetic runs with
known per-prompt scores (no MLflow)."""

from __future__ import annotations

import numpy as np
import pytest
from report.comparison.synthetic import IDS, PLAN, diff_table, run_data, seed_values
from scipy import stats as sps

from polylora.errors import PolyloraError
from polylora.report.comparison.compute import compare_groups
from polylora.report.comparison.model import RunData
from polylora.stats import intervals
from polylora.stats import significance as stats
from polylora.stats.analysis import Plan


def test_delta_ci_and_sensitivity_tests_match_hand_computation_and_scipy() -> None:
    res = compare_groups(run_data(), "baseline", ["rouge_l", "self_bleu", "pass@10"], plan=PLAN)
    assert res.groups == ["baseline", "polychromic_0.1", "polychromic_0.3"]
    e = res.effect("polychromic_0.3", "self_bleu")
    d = diff_table("polychromic_0.3", "self_bleu")
    ref = intervals.crossed_difference(d)
    assert e.method == "crossed seeds × prompts" and (e.n_seeds, e.n_prompts) == (3, 24)
    assert (e.delta, e.low, e.high, e.pvalue) == pytest.approx(
        (d.mean(), ref.low, ref.high, ref.pvalue))
    assert e.delta < 0  # native units: self-BLEU fell (lower is better)
    seed_diff = seed_values("polychromic_0.3", "self_bleu") - seed_values("baseline", "self_bleu")
    t = sps.ttest_rel(seed_values("polychromic_0.3", "self_bleu"),
                      seed_values("baseline", "self_bleu"))
    assert e.seed_test.pvalue == pytest.approx(t.pvalue)
    assert e.seed_test.d_z == pytest.approx(seed_diff.mean() / seed_diff.std(ddof=1))
    per_prompt = d.mean(axis=0)
    assert e.wilcoxon_p == pytest.approx(sps.wilcoxon(per_prompt).pvalue)
    assert e.mde > 0


def test_primary_endpoint_gates_a_holm_family_of_secondaries() -> None:
    res = compare_groups(run_data(), "baseline", ["rouge_l", "self_bleu", "pass@10"], plan=PLAN)
    strong = res.effect("polychromic_0.3", "pass@10")
    assert strong.role == "primary" and strong.verdict == "confirmed" and strong.low > 0
    bleu = res.effect("polychromic_0.3", "self_bleu")
    assert bleu.role == "secondary"
    family = [e for e in res.effects if e.group == "polychromic_0.3" and e.role == "secondary"]
    assert [e.p_holm for e in family] == pytest.approx(stats.holm([e.pvalue for e in family]))
    assert bleu.verdict == "significant"
    weak = res.effect("polychromic_0.1", "pass@10")
    assert weak.verdict == "not shown"  # +0.02 with 3 seeds: the CI includes 0
    assert res.effect("polychromic_0.1", "self_bleu").verdict.startswith("not tested (gate")
    ni = res.effect("polychromic_0.3", "rouge_l")
    assert ni.role == "non-inferiority" and ni.verdict == "non-inferior (margin 0.05)"


def test_no_declared_primary_makes_every_test_exploratory() -> None:
    res = compare_groups(run_data(), "baseline", ["rouge_l", "pass@10"])
    assert {e.verdict.split(":")[0] for e in res.effects} == {"exploratory"}
    assert any("no primary endpoint was declared" in n for n in res.notes)


def test_duplicate_and_degenerate_metrics_leave_the_family() -> None:
    runs = [RunData(r.run_id, r.group, dict(r.metrics), per_prompt=dict(r.per_prompt),
                    seed=r.seed) for r in run_data()]  # copies: SCORES is shared
    rng = np.random.default_rng(0)
    for r in runs:
        r.metrics["pass@1"] = r.metrics["sample_accuracy"] = float(rng.uniform())
        r.metrics["distinct_2"] = 0.05
        r.per_prompt["distinct_2"] = {i: (1.0 if k == 0 else 0.0) for k, i in enumerate(IDS)}
    res = compare_groups(runs, "baseline", ["pass@1", "sample_accuracy", "distinct_2",
                                            "pass@10"], plan=PLAN)
    assert res.excluded["sample_accuracy"] == "duplicate of pass@1 (equal in every run)"
    assert res.excluded["distinct_2"].startswith("degenerate: 96% of prompt scores equal 0")
    assert res.effect("polychromic_0.3", "sample_accuracy").role == "excluded"
    assert "pass@1" not in res.excluded


def test_seed_level_tests_without_per_prompt_scores() -> None:
    data = [RunData(r.run_id, r.group, r.metrics, seed=r.seed) for r in run_data()]
    e = compare_groups(data, "baseline", ["rouge_l"]).effect("polychromic_0.3", "rouge_l")
    assert e.method == "paired t over seeds"
    ref = sps.ttest_rel(seed_values("polychromic_0.3", "rouge_l"),
                        seed_values("baseline", "rouge_l"))
    assert e.pvalue == pytest.approx(ref.pvalue)
    unpaired = [RunData(r.run_id, r.group, r.metrics, seed=f"{r.group}{r.seed}")
                for r in run_data()]
    e = compare_groups(unpaired, "baseline", ["rouge_l"]).effect("polychromic_0.3", "rouge_l")
    assert e.method.startswith("Welch")
    ref = sps.ttest_ind(seed_values("polychromic_0.3", "rouge_l"),
                        seed_values("baseline", "rouge_l"), equal_var=False)
    assert e.pvalue == pytest.approx(ref.pvalue)


def test_summary_cells_are_t_intervals_over_seeds() -> None:
    res = compare_groups(run_data(), "baseline", ["rouge_l"])
    cell = res.summary("baseline", "rouge_l")
    ci = intervals.t_interval(seed_values("baseline", "rouge_l"))
    assert (cell.mean, cell.low, cell.high) == pytest.approx((ci.estimate, ci.low, ci.high))


def test_unknown_metric_and_baseline_errors() -> None:
    with pytest.raises(PolyloraError, match=r"not logged by any selected run; available: pass@10"):
        compare_groups(run_data(), "baseline", ["bertscore_f1"])
    with pytest.raises(PolyloraError, match="baseline group 'nope' has no runs"):
        compare_groups(run_data(), "nope", ["rouge_l"])
    with pytest.raises(PolyloraError, match=r"compare\.primary/noninferiority names 'accuracy'"):
        compare_groups(run_data(), "baseline", ["rouge_l"], plan=Plan(primary="accuracy"))
