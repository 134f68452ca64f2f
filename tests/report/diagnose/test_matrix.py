"""Tests for polylora.report.diagnose: curves that hit each cell of the overfitting matrix.

The runs record experiment names of a researcher's own (not the shipped configs'), so the
commands are shown to come from the recorded values and the columns, never from names in code.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from polylora.errors import ConfigError, DataError
from polylora.report.diagnose import (
    BUCKET_LARGE,
    BUCKET_SMALL,
    BUCKET_STANDARD,
    Columns,
    Diagnosis,
    Finding,
    RunCurves,
    Thresholds,
    dataset_size_bucket,
)
from polylora.report.diagnose import diagnose as diagnose_with

SPE = 100  # steps per epoch in the synthetic runs

# A researcher's own matrix: experiment names and a default λ found in no shipped config.
CE_STD, CE_SAFE = "my_ce", "my_ce_safe"
POLY_STD, POLY_SAFE = "my_poly", "my_poly_safe"
DEFAULT_LAMBDA = 0.25
COLUMNS = Columns(
    standard={"ce": CE_STD, "polychromic": POLY_STD},
    conservative={"ce": CE_SAFE, "polychromic": POLY_SAFE},
    default_lambda={"polychromic": DEFAULT_LAMBDA},
)


def diagnose(c: RunCurves, thresholds: Thresholds | None = None) -> Diagnosis:
    """The matrix with the researcher's columns above."""
    return diagnose_with(c, thresholds, COLUMNS)


def flat_train(
    end: float = 0.6, start: float = 1.2, last_step: int = 200
) -> list[tuple[int, float]]:
    """Train loss decaying fast to a plateau at ``end`` (a converged run), logged every 10 steps."""
    return [(s, end + (start - end) * math.exp(-s / 30)) for s in range(10, last_step + 1, 10)]


def curves(
    eval_loss: list[tuple[int, float]],
    train_loss: list[tuple[int, float]] | None = None,
    **kw: object,
) -> RunCurves:
    base: dict[str, object] = {
        "steps_per_epoch": SPE,
        "eval_perplexity": None,
        "n_train_examples": None,
    }
    base.update(kw)
    return RunCurves(
        train_loss=flat_train() if train_loss is None else train_loss,
        eval_loss=eval_loss,
        **base,  # type: ignore[arg-type]
    )


def finding(diag: Diagnosis, rule: str) -> Finding:
    matches = [f for f in diag.findings if f.rule == rule]
    assert len(matches) == 1, (rule, diag.findings)
    return matches[0]


HEALTHY_EVAL = [(100, 0.70), (200, 0.65)]


# ----------------------------------------------------------------------------- train/eval gap


def test_healthy_run_continues_with_more_seeds() -> None:
    diag = diagnose(curves(HEALTHY_EVAL))
    gap = finding(diag, "train_eval_gap")
    assert diag.level == "ok" and gap.level == "ok"
    assert all(f.level == "ok" for f in diag.findings)
    # gap = 0.65 − mean(train at steps 160..200) = 0.65 − 0.602
    assert "0.048" in gap.message and "0.650" in gap.message and "< 0.2" in gap.message
    assert diag.verdict.startswith("healthy:") and "0.048" in diag.verdict
    assert diag.next_command == f"python -m polylora -m +experiment={CE_STD} seed=42,123,456"


def test_gap_between_02_and_04_is_monitor() -> None:
    diag = diagnose(curves([(100, 0.92), (200, 0.90)]))
    gap = finding(diag, "train_eval_gap")
    assert diag.level == "monitor" and gap.level == "monitor"
    assert "0.298" in gap.message and "0.2–0.4" in gap.message
    assert "early stopping" in gap.message
    assert diag.verdict.startswith("monitor:") and "0.298" in diag.verdict
    assert diag.next_command is None


@pytest.mark.parametrize(
    ("objective", "experiment", "expected"),
    [
        ("ce", None, f"python -m polylora +experiment={CE_SAFE}"),
        ("polychromic", None, f"python -m polylora +experiment={POLY_SAFE}"),
        (
            "polychromic",
            "lambda_study_0.5",  # recorded, in no column: switch to the column
            f"python -m polylora +experiment={POLY_SAFE}",
        ),
    ],
)
def test_gap_above_04_switches_to_matching_conservative_config(
    objective: str, experiment: str | None, expected: str
) -> None:
    diag = diagnose(curves([(100, 1.10), (200, 1.05)], objective=objective, experiment=experiment))
    gap = finding(diag, "train_eval_gap")
    assert diag.level == "act" and gap.level == "act"
    assert "0.448" in gap.message and "> 0.4" in gap.message and "conservative" in gap.message
    assert diag.next_command == expected
    assert diag.verdict.startswith("act:") and "0.448" in diag.verdict


def test_seed_severe_overfitting_example() -> None:
    """Example: epoch 1 train 0.8 / eval 1.0, epoch 2 train 0.3 / eval 1.2 → gap 0.9, stop."""
    train = [(s, 0.8 - 0.5 * (s - 100) / 100) for s in range(100, 201, 20)] + [(50, 1.0)]
    diag = diagnose(curves([(100, 1.0), (200, 1.2)], train_loss=train))
    assert finding(diag, "train_eval_gap").level == "act"
    assert finding(diag, "eval_rising").level == "act"
    assert diag.verdict.startswith("act:") and "(+1 more act finding(s))" in diag.verdict
    assert diag.next_command == f"python -m polylora +experiment={CE_SAFE}"
    under = finding(diag, "underfitting")  # steep train drop here is memorization
    assert under.level == "ok" and "not underfitting" in under.message


def test_gap_uses_smoothed_train_loss_at_the_last_eval_step() -> None:
    # A one-point dip of the train loss at step 200 must not dominate (smoothed over 5 points),
    # and train points after the last eval (step 200) must not be used.
    train = [(s, 0.6) for s in range(10, 200, 10)] + [(200, 0.2)] + [(s, 0.1) for s in (210, 220)]
    diag = diagnose(curves([(100, 0.80), (200, 0.75)], train_loss=train))
    gap = finding(diag, "train_eval_gap")
    assert "0.230" in gap.message and "steps 160–200" in gap.message
    assert gap.level == "monitor"
    unsmoothed = diagnose(
        curves([(100, 0.80), (200, 0.75)], train_loss=train), Thresholds(smoothing_window=1)
    )
    assert finding(unsmoothed, "train_eval_gap").level == "act"


def test_eval_before_any_train_point_uses_nearest_train_points() -> None:
    diag = diagnose(curves([(5, 1.0)], train_loss=[(10, 0.9), (20, 0.8)]))
    assert "0.150" in finding(diag, "train_eval_gap").message


def test_already_conservative_overfitting_has_no_conservative_command() -> None:
    diag = diagnose(curves([(100, 1.10), (200, 1.05)], experiment=CE_SAFE))
    gap = finding(diag, "train_eval_gap")
    assert gap.level == "act" and gap.command is None and "stop earlier" in gap.message


# ----------------------------------------------------------------------------- eval rising


def test_eval_rising_after_epoch_1_is_act_conservative() -> None:
    evals = [(50, 0.70), (100, 0.62), (150, 0.68), (200, 0.75)]
    diag = diagnose(curves(evals, objective="polychromic", diversity_weight=0.3))
    rising = finding(diag, "eval_rising")
    assert finding(diag, "train_eval_gap").level == "ok"  # gap alone looks healthy (0.149)
    assert rising.level == "act" and diag.level == "act"
    assert "rising after epoch 1" in rising.message
    for number in ("0.620", "step 100", "epoch 1", "0.750", "epoch 2", "0.130"):
        assert number in rising.message
    assert diag.next_command == f"python -m polylora +experiment={POLY_SAFE}"


def test_eval_minimum_in_a_later_epoch_is_monitor_with_fewer_epochs() -> None:
    train = flat_train(last_step=300)
    diag = diagnose(curves([(100, 0.80), (200, 0.62), (300, 0.70)], train_loss=train))
    rising = finding(diag, "eval_rising")
    assert rising.level == "monitor" and "epoch 2" in rising.message and "0.080" in rising.message
    assert rising.command == f"python -m polylora +experiment={CE_STD} train.epochs=2"


def test_eval_rising_without_epoch_information_is_monitor() -> None:
    diag = diagnose(curves([(50, 0.70), (100, 0.62), (200, 0.75)], steps_per_epoch=None))
    rising = finding(diag, "eval_rising")
    assert rising.level == "monitor" and "epoch unknown" in rising.message
    assert "steps_per_epoch" in rising.message


def test_small_eval_wobble_within_margin_is_ok() -> None:
    diag = diagnose(curves([(100, 0.64), (200, 0.66)]))
    assert finding(diag, "eval_rising").level == "ok"
    assert "0.020" in finding(diag, "eval_rising").message


def test_single_eval_point_asks_for_more_evaluation() -> None:
    diag = diagnose(curves([(200, 0.65)]))
    assert finding(diag, "eval_rising").level == "monitor"
    assert "only 1 eval point" in finding(diag, "eval_rising").message


# ----------------------------------------------------------------------------- underfitting


def test_train_loss_still_falling_suggests_more_epochs() -> None:
    train = [(s, 2.0 - 0.005 * s) for s in range(10, 201, 10)]  # 1.95 → 1.0, linear
    diag = diagnose(curves([(100, 1.55), (200, 1.02)], train_loss=train))
    under = finding(diag, "underfitting")
    assert under.level == "act" and "still learning" in under.message
    assert "2 epochs" in under.message or "instead of 2" in under.message
    assert under.command == f"python -m polylora +experiment={CE_STD} train.epochs=4"
    assert diag.next_command == under.command


def test_eval_far_below_train_suggests_rank_32() -> None:
    diag = diagnose(curves([(100, 0.45), (200, 0.30)]))
    under = finding(diag, "underfitting")
    assert under.level == "monitor" and "-0.302" in under.message
    assert under.command == f"python -m polylora +experiment={CE_STD} lora=r32"


def test_converged_run_shows_no_underfitting() -> None:
    under = finding(diagnose(curves(HEALTHY_EVAL)), "underfitting")
    assert under.level == "ok" and "last quarter" in under.message


# ----------------------------------------------------------------------------- perplexity


@pytest.mark.parametrize(
    ("ppl", "level", "text"),
    [
        (12.0, "ok", "12.0 within 5–20"),
        (3.2, "monitor", "3.2 below"),
        (27.5, "monitor", "27.5 above"),
        (85.0, "act", "skyrocketing"),
        (math.inf, "act", "inf"),
    ],
)
def test_perplexity_range(ppl: float, level: str, text: str) -> None:
    diag = diagnose(curves(HEALTHY_EVAL, eval_perplexity=ppl))
    rule = finding(diag, "perplexity")
    assert rule.level == level and text in rule.message
    assert diag.level == level
    if level == "act":
        assert diag.next_command == f"python -m polylora +experiment={CE_SAFE}"


# ----------------------------------------------------------------------------- λ rules


def test_good_diversity_poor_quality_lowers_lambda_to_half() -> None:
    diag = diagnose(
        curves(
            HEALTHY_EVAL,
            objective="polychromic",
            experiment="lambda_study",
            diversity=0.45,
            quality=0.10,
            diversity_weight=0.3,
        )
    )
    rule = finding(diag, "quality_diversity")
    assert rule.level == "act" and diag.level == "act"
    for number in ("0.450", "0.100", "λ=0.3", "0.15"):
        assert number in rule.message
    assert diag.next_command == (
        "python -m polylora +experiment=lambda_study objective.pg_weight=0.15"
    )


def test_poor_quality_judged_against_the_baseline_when_given() -> None:
    kw = {"objective": "polychromic", "diversity": 0.45, "diversity_weight": 0.3}
    poor = diagnose(curves(HEALTHY_EVAL, quality=0.33, baseline_quality=0.40, **kw))
    rule = finding(poor, "quality_diversity")
    assert rule.level == "act" and "0.380" in rule.message  # 0.40 − 5 %
    fine = diagnose(curves(HEALTHY_EVAL, quality=0.39, baseline_quality=0.40, **kw))
    assert finding(fine, "quality_diversity").level == "ok"


def test_diversity_collapse_raises_lambda() -> None:
    diag = diagnose(
        curves(HEALTHY_EVAL, objective="polychromic", diversity=0.05, diversity_weight=0.3)
    )
    rule = finding(diag, "diversity_collapse")
    assert rule.level == "act" and "0.050" in rule.message and "< 0.1" in rule.message
    assert diag.next_command == (
        f"python -m polylora +experiment={POLY_STD} objective.pg_weight=0.6"
    )


def test_diversity_collapse_assumes_the_objective_default_lambda_when_unrecorded() -> None:
    diag = diagnose(
        curves(
            HEALTHY_EVAL,
            objective="polychromic",
            experiment=POLY_SAFE,
            diversity=0.05,
        )
    )
    rule = finding(diag, "diversity_collapse")
    assert "assumed" in rule.message and f"from {DEFAULT_LAMBDA}" in rule.message
    assert rule.command == (
        f"python -m polylora +experiment={POLY_SAFE} objective.pg_weight=0.5"
    )


def test_diversity_collapse_under_ce_points_to_polychromic() -> None:
    diag = diagnose(curves(HEALTHY_EVAL, diversity=0.05))
    rule = finding(diag, "diversity_collapse")
    assert rule.level == "monitor" and "0.050" in rule.message
    assert rule.command == f"python -m polylora +experiment={POLY_STD}"


def test_good_quality_low_diversity_keeps_or_raises_lambda() -> None:
    diag = diagnose(
        curves(
            HEALTHY_EVAL, objective="polychromic", diversity=0.2, quality=0.5, diversity_weight=0.2
        )
    )
    rule = finding(diag, "low_diversity")
    assert rule.level == "monitor" and "0.200" in rule.message and "0.500" in rule.message
    assert rule.command == (
        f"python -m polylora +experiment={POLY_STD} objective.pg_weight=0.4"
    )


# ----------------------------------------------------------------------------- dataset size


@pytest.mark.parametrize(
    ("n", "bucket"),
    [
        (0, BUCKET_SMALL),
        (799, BUCKET_SMALL),
        (800, BUCKET_STANDARD),
        (1500, BUCKET_STANDARD),
        (1501, BUCKET_LARGE),
    ],
)
def test_dataset_size_bucket_boundaries(n: int, bucket: str) -> None:
    assert dataset_size_bucket(n) == bucket


def test_dataset_size_bucket_strings_and_error() -> None:
    assert BUCKET_SMALL == "<800: conservative"
    assert BUCKET_STANDARD == "800-1500: standard"
    assert BUCKET_LARGE == ">1500: standard, consider rank 32"
    with pytest.raises(DataError, match="negative"):
        dataset_size_bucket(-1)


def test_small_dataset_switches_to_conservative() -> None:
    diag = diagnose(curves(HEALTHY_EVAL, n_train_examples=650))
    rule = finding(diag, "dataset_size")
    assert rule.level == "act" and "650" in rule.message and BUCKET_SMALL in rule.message
    assert diag.next_command == f"python -m polylora +experiment={CE_SAFE}"
    already = diagnose(
        curves(HEALTHY_EVAL, n_train_examples=650, experiment=CE_SAFE)
    )
    assert finding(already, "dataset_size").level == "ok"


def test_standard_dataset_is_ok() -> None:
    diag = diagnose(curves(HEALTHY_EVAL, n_train_examples=1000))
    rule = finding(diag, "dataset_size")
    assert rule.level == "ok" and "1000" in rule.message and BUCKET_STANDARD in rule.message
    assert diag.level == "ok" and "gap exceeds 0.3" in rule.message
    watch = diagnose(curves(HEALTHY_EVAL, n_train_examples=1000), Thresholds(gap_watch=0.25))
    assert "gap exceeds 0.25" in finding(watch, "dataset_size").message


def test_large_dataset_suggests_rank_32_ablation() -> None:
    diag = diagnose(
        curves(
            HEALTHY_EVAL,
            n_train_examples=2400,
            experiment="lambda_study",
            objective="polychromic",
        )
    )
    rule = finding(diag, "dataset_size")
    assert rule.level == "ok" and "2400" in rule.message and BUCKET_LARGE in rule.message
    assert rule.command == "python -m polylora +experiment=lambda_study lora=r32"
    # Healthy overall: more seeds come first, the ablation is listed as another suggestion.
    assert diag.next_command == "python -m polylora -m +experiment=lambda_study seed=42,123,456"
    assert "`python -m polylora +experiment=lambda_study lora=r32`" in diag.to_markdown()


# ----------------------------------------------------------------------------- errors & output


def test_empty_curves_raise_clear_errors() -> None:
    with pytest.raises(DataError, match="no train/loss points"):
        diagnose(curves(HEALTHY_EVAL, train_loss=[]))
    with pytest.raises(DataError, match="no eval/loss points"):
        diagnose(curves([]))
    with pytest.raises(DataError, match="diverged"):
        diagnose(curves([(100, float("nan"))]))
    with pytest.raises(ConfigError, match="objective"):
        diagnose(curves(HEALTHY_EVAL, objective="dpo"))
    with pytest.raises(DataError, match="steps_per_epoch"):
        diagnose(curves(HEALTHY_EVAL, steps_per_epoch=0))


def test_nan_train_loss_means_divergence() -> None:
    train = [*flat_train(), (205, float("nan"))]
    diag = diagnose(curves(HEALTHY_EVAL, train_loss=train))
    rule = finding(diag, "non_finite_loss")
    assert rule.level == "act" and "1 train" in rule.message
    assert diag.next_command == f"python -m polylora +experiment={CE_SAFE}"


def test_unsorted_points_are_handled() -> None:
    shuffled = list(reversed(flat_train()))
    diag = diagnose(curves(list(reversed(HEALTHY_EVAL)), train_loss=shuffled))
    assert diag.level == "ok" and "0.048" in diag.verdict


def test_to_markdown_lists_verdict_findings_and_command() -> None:
    diag = diagnose(curves([(100, 1.10), (200, 1.05)], n_train_examples=1000))
    md = diag.to_markdown()
    assert md.startswith("## Diagnosis: act")
    assert f"**Verdict:** {diag.verdict}" in md
    assert "| act | train_eval_gap |" in md and "| ok | dataset_size |" in md
    assert f"```bash\npython -m polylora +experiment={CE_SAFE}\n```" in md


def test_markdown_escapes_pipes() -> None:
    diag = Diagnosis([Finding("ok", "r", "a | b")], "healthy: x", None)
    assert "a \\| b" in diag.to_markdown()


def test_custom_thresholds() -> None:
    strict = Thresholds(gap_monitor=0.01, gap_act=0.04)
    diag = diagnose(curves(HEALTHY_EVAL), strict)
    assert finding(diag, "train_eval_gap").level == "act"
    assert "> 0.04" in diag.verdict
    assert replace(strict, gap_act=1.0).gap_act == 1.0


# ----------------------------------------------------------------------------- without columns


def test_recorded_experiment_drives_commands_without_any_columns() -> None:
    """No columns: every command reruns the recorded experiment; the conservative switch is
    advised without a command (no name to point at)."""
    ok = diagnose_with(curves(HEALTHY_EVAL, experiment="lab_run_7"))
    assert ok.next_command == "python -m polylora -m +experiment=lab_run_7 seed=42,123,456"
    bad = diagnose_with(curves([(100, 1.10), (200, 1.05)], experiment="lab_run_7"))
    gap = finding(bad, "train_eval_gap")
    assert gap.level == "act" and "switch to conservative" in gap.message
    assert gap.command is None
    no_experiment = diagnose_with(curves(HEALTHY_EVAL))
    assert no_experiment.next_command is None  # nothing recorded, no column: no command


def test_unrecorded_lambda_without_a_default_gives_no_lambda_command() -> None:
    diag = diagnose_with(curves(HEALTHY_EVAL, objective="polychromic", experiment="lab",
                                diversity=0.05))
    rule = finding(diag, "diversity_collapse")
    assert rule.level == "act" and "not recorded" in rule.message and rule.command is None


def test_lambda_cap_is_a_threshold() -> None:
    diag = diagnose(curves(HEALTHY_EVAL, objective="polychromic", diversity=0.05,
                           diversity_weight=0.4))
    assert finding(diag, "diversity_collapse").command is not None
    capped = diagnose(curves(HEALTHY_EVAL, objective="polychromic", diversity=0.05,
                             diversity_weight=0.4), Thresholds(lambda_max=0.4))
    rule = finding(capped, "diversity_collapse")
    assert "already at the cap" in rule.message and rule.command is None
