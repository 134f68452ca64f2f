"""The overfitting decision matrix's rules, one function per rule: a run's context in, its
findings out (each message carries the numbers it used).

* ``non_finite_loss``: a NaN/inf loss value → act, conservative (lower lr).
* ``train_eval_gap``: gap = last eval loss − train loss near that step (mean of the last
  ``smoothing_window`` train points at or before it): < 0.2 ok (run more seeds), 0.2–0.4
  monitor (early stopping handles it), > 0.4 act → the conservative column.
* ``eval_rising``: the last eval loss is > ``eval_rise_margin`` above its minimum. Minimum in
  epoch 1 with evals in later epochs → act, conservative; otherwise monitor (train only up to
  the best epoch).
* ``perplexity``: outside 5–20 → monitor; > 40 ("skyrocketing") → act, conservative.
* ``dataset_size``: < 800 examples → act, conservative; 800–1500 → ok (standard);
  > 1500 → ok, with a rank-32 ablation (``lora=r32``).
* ``diversity_collapse``: diversity < 0.1 → act, raise λ (×2); for a CE run → monitor, try
  the diversity-aware objective's standard column.
* ``quality_diversity``: polychromic with diversity ≥ 0.3 but poor quality → act, λ / 2.
* ``underfitting``: train loss still falling ≥ 10 % over the last quarter of steps while eval
  follows (gap < 0.2, no eval rise) → act, more epochs; eval far below train (gap < −0.2) →
  monitor, ``lora=r32``.
* ``low_diversity``: polychromic with good quality but diversity < 0.3 → monitor, raise λ.

Commands rerun the run's own experiment (its recorded tag) with overrides, or point at the
matrix's columns (:class:`~polylora.report.diagnose.inputs.Columns`); λ is the run's recorded
``objective.pg_weight``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from polylora.data.size_buckets import BUCKET_SMALL, BUCKET_STANDARD, dataset_size_bucket
from polylora.report.diagnose.context import (
    DIVERSITY_WEIGHT_OVERRIDE,
    EPOCHS_OVERRIDE,
    RANK32_OVERRIDE,
    SEED_OVERRIDE,
    SEEDS,
    RunContext,
    command,
)
from polylora.report.diagnose.findings import Finding
from polylora.report.diagnose.inputs import CE, POLYCHROMIC

__all__ = ["RULES", "RULE_PRIORITY"]

Point = tuple[int, float]

#: Rule ids in priority order: the verdict's headline is the first finding at the worst level.
RULE_PRIORITY = (
    "non_finite_loss",
    "train_eval_gap",
    "eval_rising",
    "perplexity",
    "dataset_size",
    "diversity_collapse",
    "quality_diversity",
    "underfitting",
    "low_diversity",
)


def _f(x: float) -> str:
    return f"{x:.3f}"


def _g(x: float) -> str:
    return f"{round(x, 4):g}"


def _rule_non_finite(ctx: RunContext) -> list[Finding]:
    n_train, n_eval = ctx.n_nonfinite_train, ctx.n_nonfinite_eval
    if not (n_train or n_eval):
        return []
    cmd = ctx.conservative_command()
    fix = "lower the learning rate" if ctx.conservative else "switch to conservative configs"
    return [
        Finding(
            "act",
            "non_finite_loss",
            f"{n_train} train and {n_eval} eval loss values are NaN/inf: training diverged; {fix}",
            cmd,
        )
    ]


def _rule_gap(ctx: RunContext) -> list[Finding]:
    th = ctx.th
    lo, hi = ctx.train_window_steps
    numbers = (
        f"train/eval gap {_f(ctx.gap)} (eval {_f(ctx.eval_last)} at step {ctx.eval_step} − "
        f"train {_f(ctx.train_at_eval)}, mean of {ctx.train_window} train points, "
        f"steps {lo}–{hi})"
    )
    if ctx.gap > th.gap_act:
        cmd = ctx.conservative_command()
        if not ctx.conservative:
            advice = "severe overfitting: stop and switch to conservative configs"
        else:
            advice = "severe overfitting even with conservative configs: stop earlier or add data"
        return [Finding("act", "train_eval_gap", f"{numbers} > {_g(th.gap_act)}: {advice}", cmd)]
    if ctx.gap >= th.gap_monitor:
        msg = (
            f"{numbers} in {_g(th.gap_monitor)}–{_g(th.gap_act)}: mild overfitting; "
            "monitor, early stopping will handle it"
        )
        return [Finding("monitor", "train_eval_gap", msg, None)]
    msg = (
        f"{numbers} < {_g(th.gap_monitor)}: healthy; continue with this config "
        f"and run more seeds ({SEEDS})"
    )
    cmd = ctx.rerun(f"{SEED_OVERRIDE}={SEEDS}", multirun=True)
    return [Finding("ok", "train_eval_gap", msg, cmd)]


def _rule_eval_rising(ctx: RunContext) -> list[Finding]:
    th = ctx.th
    if len(ctx.evals) < 2:
        msg = (
            f"only 1 eval point (step {ctx.eval_step}): cannot tell whether eval loss rises; "
            "evaluate at least once per epoch"
        )
        return [Finding("monitor", "eval_rising", msg, None)]
    numbers = (
        f"eval loss min {_f(ctx.eval_min)} at step {ctx.eval_min_step} "
        f"({ctx.epoch_text(ctx.eval_min_step)}), last {_f(ctx.eval_last)} at step "
        f"{ctx.eval_step} ({ctx.epoch_text(ctx.eval_step)}), rise {_f(ctx.eval_rise)}"
    )
    if not ctx.eval_rising:
        return [
            Finding("ok", "eval_rising", f"{numbers} ≤ margin {_g(th.eval_rise_margin)}: no rise")
        ]
    min_epoch, last_epoch = ctx.epoch(ctx.eval_min_step), ctx.epoch(ctx.eval_step)
    if min_epoch == 1 and last_epoch is not None and last_epoch > 1:
        cmd = ctx.conservative_command()
        advice = "switch to conservative configs" if cmd else "train for 1 epoch"
        if cmd is None:
            cmd = ctx.rerun(f"{EPOCHS_OVERRIDE}=1")
        msg = (
            f"{numbers} > margin {_g(th.eval_rise_margin)}: eval loss rising after epoch 1 "
            f"(overfitting); keep the best checkpoint (early stopping) and {advice}"
        )
        return [Finding("act", "eval_rising", msg, cmd)]
    cmd = None
    if min_epoch is not None and last_epoch is not None and last_epoch > min_epoch:
        cmd = ctx.rerun(f"{EPOCHS_OVERRIDE}={min_epoch}")
    msg = (
        f"{numbers} > margin {_g(th.eval_rise_margin)}: eval loss rose after its minimum; "
        "early stopping keeps the best checkpoint"
        + (f"; next time train {min_epoch} epoch(s)" if cmd else "")
        + (
            "; pass steps_per_epoch to check the after-epoch-1 rule"
            if ctx.curves.steps_per_epoch is None
            else ""
        )
    )
    return [Finding("monitor", "eval_rising", msg, cmd)]


def _tail_relative_drop(train: list[Point]) -> tuple[float, int, int] | None:
    """Relative train-loss drop over the last quarter of steps (linear fit), or None."""
    if len(train) < 4:
        return None
    first, last = train[0][0], train[-1][0]
    start = first + 0.75 * (last - first)
    tail = [p for p in train if p[0] >= start]
    if len(tail) < 3:
        tail = train[-3:]
    steps = np.array([s for s, _ in tail], dtype=float)
    vals = np.array([v for _, v in tail], dtype=float)
    if steps[-1] == steps[0]:
        return None
    slope, intercept = np.polyfit(steps, vals, 1)
    at_start = slope * steps[0] + intercept
    if at_start <= 0:
        return None
    drop = -slope * (steps[-1] - steps[0]) / at_start
    return float(drop), int(steps[0]), int(steps[-1])


def _rule_underfitting(ctx: RunContext) -> list[Finding]:
    th = ctx.th
    tail = _tail_relative_drop(ctx.train)
    if tail is not None:
        drop, s0, s1 = tail
        falling = f"train loss fell {drop:.1%} over steps {s0}–{s1} (last quarter)"
        if drop >= th.underfit_rel_drop and not ctx.eval_rising and ctx.gap < th.gap_monitor:
            spe = ctx.curves.steps_per_epoch
            if spe is not None:
                done = max(1, math.ceil(ctx.train[-1][0] / spe))
                cmd = ctx.rerun(f"{EPOCHS_OVERRIDE}={2 * done}")
                more = f"train longer: {2 * done} epochs instead of {done}"
            else:
                cmd = None
                more = "train longer (pass steps_per_epoch for an exact epochs override)"
            msg = (
                f"{falling}, ≥ {th.underfit_rel_drop:.0%}, with eval following "
                f"(gap {_f(ctx.gap)}): underfitting, still learning; {more}"
            )
            return [Finding("act", "underfitting", msg, cmd)]
    else:
        falling = f"only {len(ctx.train)} train points: slope not checked"
    if ctx.gap < th.underfit_gap:
        msg = (
            f"eval loss {_f(-ctx.gap)} below train loss (gap {_f(ctx.gap)} < "
            f"{_g(th.underfit_gap)}): the model under-fits the training data (or the eval "
            "split is easier: check for leakage); try more capacity (rank 32)"
        )
        return [Finding("monitor", "underfitting", msg, ctx.rerun(RANK32_OVERRIDE))]
    if tail is not None and tail[0] >= th.underfit_rel_drop:
        why = "eval loss is rising" if ctx.eval_rising else f"the gap is {_f(ctx.gap)}"
        msg = f"{falling} but {why}: memorizing, not underfitting"
        return [Finding("ok", "underfitting", msg)]
    return [Finding("ok", "underfitting", f"{falling}: no sign of underfitting")]


def _rule_perplexity(ctx: RunContext) -> list[Finding]:
    th = ctx.th
    ppl = ctx.curves.eval_perplexity
    if ppl is None:
        return []
    rng = f"{_g(th.perplexity_low)}–{_g(th.perplexity_high)}"
    if not math.isfinite(ppl) or ppl > th.perplexity_act:
        cmd = ctx.conservative_command()
        msg = (
            f"eval perplexity {ppl:.1f} > {_g(th.perplexity_act)} (reasonable: {rng}): "
            "skyrocketing; check samples and switch to conservative configs (lower lr)"
        )
        return [Finding("act", "perplexity", msg, cmd)]
    if ppl > th.perplexity_high:
        msg = (
            f"eval perplexity {ppl:.1f} above the reasonable {rng}: "
            "monitor; check sample outputs and whether it keeps rising"
        )
        return [Finding("monitor", "perplexity", msg)]
    if ppl < th.perplexity_low:
        msg = (
            f"eval perplexity {ppl:.1f} below the reasonable {rng}: "
            "monitor; check samples for memorized or repetitive outputs"
        )
        return [Finding("monitor", "perplexity", msg)]
    return [Finding("ok", "perplexity", f"eval perplexity {ppl:.1f} within {rng}")]


def _lambda_command(ctx: RunContext, lam: float | None) -> str | None:
    return None if lam is None else ctx.rerun(f"{DIVERSITY_WEIGHT_OVERRIDE}={_g(lam)}")


def _rule_diversity(ctx: RunContext) -> list[Finding]:
    th, c = ctx.th, ctx.curves
    if c.diversity is None:
        return []
    div = float(c.diversity)
    lam, assumed = ctx.current_lambda()
    lam_text = f"λ={'?' if lam is None else _g(lam)}{assumed}"
    if div < th.diversity_collapse:
        if ctx.objective == CE:
            msg = (
                f"diversity {_f(div)} < {_g(th.diversity_collapse)}: collapsed; "
                f"expected for CE, a {POLYCHROMIC} run targets it"
            )
            cmd = command(ctx.columns.standard.get(POLYCHROMIC))
            return [Finding("monitor", "diversity_collapse", msg, cmd)]
        new = None if lam is None else ctx.raised_lambda(lam)
        if lam is not None and new is not None and new <= lam:
            msg = (
                f"diversity {_f(div)} < {_g(th.diversity_collapse)}: collapsed at "
                f"{lam_text} already at the cap; raise n_generations instead"
            )
            return [Finding("act", "diversity_collapse", msg)]
        to = "" if new is None else f" to {_g(new)}"
        msg = (
            f"diversity {_f(div)} < {_g(th.diversity_collapse)}: collapsed; raise λ "
            f"from {'?' if lam is None else _g(lam)}{assumed}{to}"
        )
        return [Finding("act", "diversity_collapse", msg, _lambda_command(ctx, new))]
    if ctx.objective != POLYCHROMIC or c.quality is None:
        return []
    quality = float(c.quality)
    if c.baseline_quality is not None:
        floor = float(c.baseline_quality) * (1 - th.quality_tolerance)
        ref = f"baseline {_f(c.baseline_quality)} − {th.quality_tolerance:.0%} = {_f(floor)}"
    else:
        floor = th.quality_poor
        ref = f"floor {_g(floor)}"
    poor = quality < floor
    numbers = f"diversity {_f(div)}, quality {_f(quality)} ({ref}), {lam_text}"
    if div >= th.diversity_good and poor:
        new = None if lam is None else lam / 2
        msg = (
            f"{numbers}: good diversity (≥ {_g(th.diversity_good)}) but poor quality; "
            + ("halve λ" if new is None else f"lower λ to {_g(new)}")
        )
        return [Finding("act", "quality_diversity", msg, _lambda_command(ctx, new))]
    if div < th.diversity_good and not poor:
        new = None if lam is None else ctx.raised_lambda(lam)
        msg = (
            f"{numbers}: good quality, diversity below {_g(th.diversity_good)}; "
            + ("keep λ or raise it" if new is None else f"keep λ or raise it to {_g(new)}")
        )
        raise_it = new is not None and lam is not None and new > lam
        cmd = _lambda_command(ctx, new) if raise_it else None
        return [Finding("monitor", "low_diversity", msg, cmd)]
    if poor:
        msg = f"{numbers}: quality poor and diversity low: λ is not the issue; check the data"
        return [Finding("monitor", "quality_diversity", msg)]
    return [Finding("ok", "quality_diversity", f"{numbers}: quality and diversity both good")]


def _rule_dataset_size(ctx: RunContext) -> list[Finding]:
    n = ctx.curves.n_train_examples
    if n is None:
        return []
    bucket = dataset_size_bucket(n)
    if bucket == BUCKET_SMALL:
        cmd = ctx.conservative_command()
        if ctx.conservative:
            msg = f"{n} training examples ({bucket}): already on a conservative config"
            return [Finding("ok", "dataset_size", msg)]
        msg = f"{n} training examples ({bucket}): very small dataset; use conservative configs"
        return [Finding("act", "dataset_size", msg, cmd)]
    if bucket == BUCKET_STANDARD:
        msg = (
            f"{n} training examples ({bucket}): rank 16 should work; monitor closely and "
            f"adjust if the gap exceeds {_g(ctx.th.gap_watch)} (now {_f(ctx.gap)})"
        )
        return [Finding("ok", "dataset_size", msg)]
    msg = f"{n} training examples ({bucket}): enough data for rank 16; try rank 32 as an ablation"
    return [Finding("ok", "dataset_size", msg, ctx.rerun(RANK32_OVERRIDE))]



RULES: tuple[Callable[[RunContext], list[Finding]], ...] = (
    _rule_non_finite,
    _rule_gap,
    _rule_eval_rising,
    _rule_perplexity,
    _rule_dataset_size,
    _rule_diversity,
    _rule_underfitting,
)
