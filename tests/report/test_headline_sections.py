"""Tests for polylora.report.headline_sections: the λ sweep's section."""

from __future__ import annotations

from pathlib import Path

from polylora.report.headline_sections import lambda_section


def test_lambda_section_renders_the_sweep_summary(tmp_path: Path) -> None:
    summary = tmp_path / "summary.csv"
    summary.write_text("trial,state,eval/pass@10,objective.diversity_weight,train_eval_gap,"
                       "duration_s,run_id,error\n0,COMPLETE,0.5,0.1,0.1,12.0,abc,\n"
                       "1,COMPLETE,0.6,0.5,0.2,13.0,def,\n", encoding="utf-8")
    lines, best = lambda_section(summary, None)
    assert any("| 1 | COMPLETE | 0.6 | 0.5 |" in line for line in lines)
    assert best is not None and "λ = 0.5" in best
    missing, none = lambda_section(tmp_path / "absent.csv", None)
    assert none is None and "--lambda-sweep" in missing[0]
