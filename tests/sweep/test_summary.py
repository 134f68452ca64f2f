"""The per-trial summary table (csv + Markdown)."""

from __future__ import annotations

import csv
from pathlib import Path
from types import SimpleNamespace

from polylora.sweep.summary import TrialRow, train_eval_gap, trial_rows, write_summary
from polylora.sweep.tags import ERROR_ATTR


def read_summary(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))

def test_train_eval_gap_prefers_the_logged_gap() -> None:
    assert train_eval_gap({"train/eval_gap": 0.3, "eval/loss": 9.0}) == 0.3
    assert train_eval_gap({"eval/loss": 2.5, "train/final_loss": 2.0}) == 0.5
    assert train_eval_gap({"eval/loss": 2.5}) is None


def test_summary_table_rows_and_markdown(tmp_path: Path) -> None:
    from datetime import datetime, timedelta

    start = datetime(2026, 1, 1)

    def trial(number: int, state: str, values: list[float] | None, **attrs: str) -> object:
        return SimpleNamespace(
            number=number, state=SimpleNamespace(name=state), values=values,
            params={"lora.rank": 8 * (number + 1)}, user_attrs=attrs,
            datetime_start=start, datetime_complete=start + timedelta(seconds=4))

    run = SimpleNamespace(
        data=SimpleNamespace(metrics={"eval/loss": 2.5, "train/final_loss": 2.0}),
        info=SimpleNamespace(run_id="r1", start_time=1000, end_time=3500))
    rows = trial_rows(
        [trial(1, "FAIL", None, **{ERROR_ATTR: "bad | value"}), trial(0, "COMPLETE", [1.5])],
        ["eval/loss"], {0: run})
    csv_path, md_path = write_summary(rows, ["eval/loss"], tmp_path, title="Study s")
    got = read_summary(csv_path)
    assert got[0] == {"trial": "0", "state": "COMPLETE", "eval/loss": "1.5", "lora.rank": "8",
                      "train_eval_gap": "0.5", "steps": "", "duration_s": "2.5",
                      "tokens_per_s": "", "cost_usd": "", "run_id": "r1", "error": ""}
    assert got[1]["state"] == "FAIL" and got[1]["eval/loss"] == ""
    assert got[1]["duration_s"] == "4.0" and got[1]["error"] == "bad | value"
    md = md_path.read_text().splitlines()
    assert md[0] == "# Study s"
    assert md[2] == ("| trial | state | eval/loss | lora.rank | train_eval_gap | steps "
                     "| duration_s | tokens_per_s | cost_usd | run_id | error |")
    assert md[5].endswith("| bad \\| value |")


def test_summary_says_which_split_was_optimized(tmp_path: Path) -> None:
    rows = [TrialRow(trial=0, state="COMPLETE", values={"val/pass@10": 0.5}, params={},
                            train_eval_gap=None, duration_s=1.0, run_id="r", error="")]
    _, md = write_summary(rows, ["val/pass@10"], tmp_path)
    assert "Optimized on: val/pass@10 (validation split)" in md.read_text()


def test_study_totals_count_states_steps_cost_and_speed(tmp_path: Path) -> None:
    from polylora.sweep.summary import study_totals

    def row(number: int, state: str, steps: float, cost: float, speed: float | None) -> TrialRow:
        return TrialRow(trial=number, state=state, values={"eval/loss": 1.0}, params={},
                        train_eval_gap=None, duration_s=1.0, run_id=None, error=None,
                        steps=steps, cost_usd=cost, tokens_per_s=speed)

    rows = [row(0, "COMPLETE", 8, 0.30, 100.0), row(1, "PRUNED", 2, 0.10, 80.0),
            row(2, "COMPLETE", 8, 0.30, None), row(3, "FAIL", 0, 0.02, None)]
    totals = study_totals(rows)
    assert totals.states == {"COMPLETE": 2, "PRUNED": 1, "FAIL": 1}
    assert totals.steps == 18 and abs(totals.cost_usd - 0.72) < 1e-12
    assert abs(totals.cost_per_finished_trial_usd - 0.36) < 1e-12  # pruned and failed paid too
    assert totals.tokens_per_s == 90.0
    metrics = totals.metrics()
    assert metrics["study/trials_pruned"] == 1 and metrics["study/steps"] == 18
    _, md_path = write_summary(rows, ["eval/loss"], tmp_path)
    text = md_path.read_text()
    assert "Trials: 2 COMPLETE, 1 FAIL, 1 PRUNED. Steps trained: 18." in text
    assert "Cost: $0.7200 in all, $0.3600 per finished trial" in text
    assert "Training speed: 90 tokens/s" in text
    assert study_totals([]).cost_per_finished_trial_usd is None
