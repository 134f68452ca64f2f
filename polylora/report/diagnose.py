"""The overfitting decision matrix as pure logic: training curves in, findings out.

Long module (~570 lines): the whole decision matrix and rank-sweep rules in one place;
splitting them apart is the redesign's next step.

The CLI fetches a run's curves (from MLflow) into a :class:`RunCurves` and calls
:func:`diagnose`; nothing here touches MLflow, files or models, so every rule is unit-testable.

Rules (defaults in :class:`Thresholds`; each finding's message carries the numbers it used),
in priority order:

* ``non_finite_loss``: a NaN/inf loss value → act, conservative (lower lr).
* ``train_eval_gap``: gap = last eval loss − train loss near that step (mean of the last
  ``smoothing_window`` train points at or before it): < 0.2 ok (run more seeds), 0.2–0.4
  monitor (early stopping handles it), > 0.4 act → ``+experiment=<objective>_conservative``.
* ``eval_rising``: the last eval loss is > ``eval_rise_margin`` above its minimum. Minimum in
  epoch 1 with evals in later epochs → act, conservative; otherwise monitor (train only up to
  the best epoch).
* ``perplexity``: outside 5–20 → monitor; > 40 ("skyrocketing") → act, conservative.
* ``dataset_size``: < 800 examples → act, conservative; 800–1500 → ok (standard);
  > 1500 → ok, with a rank-32 ablation (``lora=r32``).
* ``diversity_collapse``: diversity < 0.1 → act, raise λ (×2); for a CE run → monitor, try
  polychromic.
* ``quality_diversity``: polychromic with diversity ≥ 0.3 but poor quality → act, λ / 2.
* ``underfitting``: train loss still falling ≥ 10 % over the last quarter of steps while eval
  follows (gap < 0.2, no eval rise) → act, more epochs; eval far below train (gap < −0.2) →
  monitor, ``lora=r32``.
* ``low_diversity``: polychromic with good quality but diversity < 0.3 → monitor, raise λ.

The verdict is the worst level found; its headline and ``next_command`` come from the
highest-priority finding at that level. Override names used in commands
are module constants (``EPOCHS_OVERRIDE`` ...) so they follow the config schema in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from polylora.data.size_buckets import (
    BUCKET_LARGE,
    BUCKET_SMALL,
    BUCKET_STANDARD,
    dataset_size_bucket,
)
from polylora.errors import ConfigError, DataError
from polylora.report import markdown

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
    "Diagnosis",
    "Finding",
    "RunCurves",
    "Thresholds",
    "dataset_size_bucket",
    "diagnose",
]

Level = Literal["ok", "monitor", "act"]
Point = tuple[int, float]

COMMAND_PREFIX = "python -m polylora"
EPOCHS_OVERRIDE = "train.epochs"  # polylora/conf/config.yaml: train.epochs
SEED_OVERRIDE = "seed"
SEEDS = "42,123,456"  # the three training seeds of the comparison protocol
DIVERSITY_WEIGHT_OVERRIDE = "objective.diversity_weight"
RANK32_OVERRIDE = "lora=r32"

_STANDARD_EXPERIMENT = {"ce": "baseline", "polychromic": "polychromic_0.3"}
_CONSERVATIVE_EXPERIMENT = {
    "ce": "baseline_conservative",
    "polychromic": "polychromic_conservative",
}
_STANDARD_LAMBDA = 0.3  # standard column's λ
_CONSERVATIVE_LAMBDA = 0.15  # conservative column's λ

_LEVEL_RANK: dict[str, int] = {"ok": 0, "monitor": 1, "act": 2}
_LEVEL_LABEL: dict[str, str] = {"ok": "healthy", "monitor": "monitor", "act": "act"}
_RULE_PRIORITY = (
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



@dataclass
class RunCurves:
    """What :func:`diagnose` needs from one training run; optional fields enable more rules."""

    train_loss: list[tuple[int, float]]  # (step, value)
    eval_loss: list[tuple[int, float]]
    steps_per_epoch: int | None
    eval_perplexity: float | None
    n_train_examples: int | None
    diversity: float | None = None  # e.g. eval/semantic_diversity, in [0, 1]
    quality: float | None = None  # e.g. eval/accuracy or rouge, higher is better
    objective: str = "ce"  # "ce" | "polychromic"
    diversity_weight: float | None = None
    experiment: str | None = None  # e.g. "baseline" → next command suggestions
    baseline_quality: float | None = None  # the CE baseline's quality, to judge "poor quality"


@dataclass(frozen=True)
class Thresholds:
    """Decision boundaries; defaults are the small-data strategy's numbers where it gives them."""

    gap_monitor: float = 0.2  # gap in [0.2, 0.4] → monitor
    gap_act: float = 0.4  # gap > 0.4 → conservative
    smoothing_window: int = 5  # train points averaged for the gap
    eval_rise_margin: float = 0.05  # eval-loss rise above its minimum that counts
    underfit_rel_drop: float = 0.10  # relative train-loss drop over the last quarter
    underfit_gap: float = -0.2  # eval this far below train → underfitting sign
    perplexity_low: float = 5.0  # "reasonable (5-20)"
    perplexity_high: float = 20.0
    perplexity_act: float = 40.0  # "skyrocketing": twice the top of the range
    diversity_good: float = 0.3  # diversity "stable (0.3-0.5)"
    diversity_collapse: float = 0.1  # collapse: "dropping below 0.1"
    quality_poor: float = 0.25  # absolute floor, used without a baseline_quality
    quality_tolerance: float = 0.05  # relative loss vs baseline_quality that counts as poor


@dataclass
class Finding:
    """One rule's outcome: its level, the rule id, a message with the numbers, a command."""

    level: Level
    rule: str
    message: str
    command: str | None = None  # the exact command that follows this finding, if any


@dataclass
class Diagnosis:
    """All findings of a run, the overall verdict and the one command to run next."""

    findings: list[Finding]
    verdict: str
    next_command: str | None
    level: Level = "ok"

    def to_markdown(self) -> str:
        """Render as a Markdown section: verdict, findings table, next command."""
        lines = [
            f"## Diagnosis: {_LEVEL_LABEL[self.level]}",
            "",
            f"**Verdict:** {self.verdict}",
            "",
            *markdown.table(["level", "rule", "finding"],
                            [[f.level, f.rule, f.message] for f in self.findings]),
        ]
        if self.next_command:
            lines += ["", "**Next command:**", "", "```bash", self.next_command, "```"]
        others: dict[str, str] = {}
        for f in self.findings:
            if f.command and f.command != self.next_command:
                others.setdefault(f.command, f.rule)
        if others:
            lines += ["", "Other suggestions:", ""]
            lines += [f"- `{cmd}` ({rule})" for cmd, rule in others.items()]
        return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- helpers


def _f(x: float) -> str:
    return f"{x:.3f}"


def _g(x: float) -> str:
    return f"{round(x, 4):g}"


def _command(experiment: str, *overrides: str, multirun: bool = False) -> str:
    parts = [COMMAND_PREFIX, *(["-m"] if multirun else []), f"+experiment={experiment}"]
    return " ".join([*parts, *overrides])


class _Ctx:
    """Validated, sorted curves plus the derived numbers several rules share."""

    def __init__(self, curves: RunCurves, th: Thresholds) -> None:
        if curves.objective not in _STANDARD_EXPERIMENT:
            raise ConfigError(
                f"objective={curves.objective!r} is unknown to diagnose; use 'ce' or 'polychromic'"
            )
        if not curves.train_loss:
            raise DataError(
                "no train/loss points in this run: it logged no training loss; "
                "check the run id and that logging_steps is smaller than the run's steps"
            )
        if not curves.eval_loss:
            raise DataError(
                "no eval/loss points in this run: enable evaluation during training "
                "(eval every epoch or every N steps) and re-run"
            )
        if curves.steps_per_epoch is not None and curves.steps_per_epoch < 1:
            raise DataError(f"steps_per_epoch={curves.steps_per_epoch} must be >= 1 or None")
        if th.smoothing_window < 1:
            raise ConfigError(f"smoothing_window={th.smoothing_window} must be >= 1")
        self.curves = curves
        self.th = th
        self.objective = curves.objective
        self.experiment = curves.experiment or _STANDARD_EXPERIMENT[curves.objective]
        self.conservative = "conservative" in self.experiment
        train = sorted((int(s), float(v)) for s, v in curves.train_loss)
        evals = sorted((int(s), float(v)) for s, v in curves.eval_loss)
        self.n_nonfinite_train = sum(not math.isfinite(v) for _, v in train)
        self.n_nonfinite_eval = sum(not math.isfinite(v) for _, v in evals)
        self.train = [(s, v) for s, v in train if math.isfinite(v)]
        self.evals = [(s, v) for s, v in evals if math.isfinite(v)]
        if not self.train or not self.evals:
            which = "train" if not self.train else "eval"
            raise DataError(
                f"every {which} loss value is NaN or infinite: training diverged; "
                "lower the learning rate (e.g. +experiment="
                f"{_CONSERVATIVE_EXPERIMENT[self.objective]}) and re-run"
            )
        # The gap: last eval point vs. smoothed train loss at or before that step.
        self.eval_step, self.eval_last = self.evals[-1]
        before = [p for p in self.train if p[0] <= self.eval_step]
        if before:
            window = before[-th.smoothing_window :]
        else:  # eval logged before any train point: use the nearest train points
            window = sorted(self.train, key=lambda p: abs(p[0] - self.eval_step))[
                : th.smoothing_window
            ]
        self.train_at_eval = float(np.mean([v for _, v in window]))
        self.train_window = len(window)
        self.train_window_steps = (min(s for s, _ in window), max(s for s, _ in window))
        self.gap = self.eval_last - self.train_at_eval
        # Eval minimum (first occurrence) and the rise after it.
        values = [v for _, v in self.evals]
        i_min = int(np.argmin(values))
        self.eval_min_step, self.eval_min = self.evals[i_min]
        self.eval_rise = self.eval_last - self.eval_min
        self.eval_rising = i_min < len(self.evals) - 1 and self.eval_rise > th.eval_rise_margin

    def epoch(self, step: int) -> int | None:
        """1-based epoch containing ``step`` (a step at an epoch's end belongs to that epoch)."""
        spe = self.curves.steps_per_epoch
        if spe is None:
            return None
        return max(1, math.ceil(step / spe))

    def epoch_text(self, step: int) -> str:
        e = self.epoch(step)
        return f"epoch {e}" if e is not None else "epoch unknown"

    def conservative_command(self) -> str | None:
        if self.conservative:
            return None
        return _command(_CONSERVATIVE_EXPERIMENT[self.objective])

    def current_lambda(self) -> tuple[float, str]:
        if self.curves.diversity_weight is not None:
            return float(self.curves.diversity_weight), ""
        lam = _CONSERVATIVE_LAMBDA if self.conservative else _STANDARD_LAMBDA
        return lam, f" (assumed: {self.experiment}'s λ)"


# --------------------------------------------------------------------------- rules


def _rule_non_finite(ctx: _Ctx) -> list[Finding]:
    n_train, n_eval = ctx.n_nonfinite_train, ctx.n_nonfinite_eval
    if not (n_train or n_eval):
        return []
    cmd = ctx.conservative_command()
    fix = "switch to conservative configs (lr 1e-4)" if cmd else "lower the learning rate"
    return [
        Finding(
            "act",
            "non_finite_loss",
            f"{n_train} train and {n_eval} eval loss values are NaN/inf: training diverged; {fix}",
            cmd,
        )
    ]


def _rule_gap(ctx: _Ctx) -> list[Finding]:
    th = ctx.th
    lo, hi = ctx.train_window_steps
    numbers = (
        f"train/eval gap {_f(ctx.gap)} (eval {_f(ctx.eval_last)} at step {ctx.eval_step} − "
        f"train {_f(ctx.train_at_eval)}, mean of {ctx.train_window} train points, "
        f"steps {lo}–{hi})"
    )
    if ctx.gap > th.gap_act:
        cmd = ctx.conservative_command()
        if cmd:
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
    cmd = _command(ctx.experiment, f"{SEED_OVERRIDE}={SEEDS}", multirun=True)
    return [Finding("ok", "train_eval_gap", msg, cmd)]


def _rule_eval_rising(ctx: _Ctx) -> list[Finding]:
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
            cmd = _command(ctx.experiment, f"{EPOCHS_OVERRIDE}=1")
        msg = (
            f"{numbers} > margin {_g(th.eval_rise_margin)}: eval loss rising after epoch 1 "
            f"(overfitting); keep the best checkpoint (early stopping) and {advice}"
        )
        return [Finding("act", "eval_rising", msg, cmd)]
    cmd = None
    if min_epoch is not None and last_epoch is not None and last_epoch > min_epoch:
        cmd = _command(ctx.experiment, f"{EPOCHS_OVERRIDE}={min_epoch}")
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


def _rule_underfitting(ctx: _Ctx) -> list[Finding]:
    th = ctx.th
    tail = _tail_relative_drop(ctx.train)
    if tail is not None:
        drop, s0, s1 = tail
        falling = f"train loss fell {drop:.1%} over steps {s0}–{s1} (last quarter)"
        if drop >= th.underfit_rel_drop and not ctx.eval_rising and ctx.gap < th.gap_monitor:
            spe = ctx.curves.steps_per_epoch
            if spe is not None:
                done = max(1, math.ceil(ctx.train[-1][0] / spe))
                cmd = _command(ctx.experiment, f"{EPOCHS_OVERRIDE}={2 * done}")
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
        return [Finding("monitor", "underfitting", msg, _command(ctx.experiment, RANK32_OVERRIDE))]
    if tail is not None and tail[0] >= th.underfit_rel_drop:
        why = "eval loss is rising" if ctx.eval_rising else f"the gap is {_f(ctx.gap)}"
        msg = f"{falling} but {why}: memorizing, not underfitting"
        return [Finding("ok", "underfitting", msg)]
    return [Finding("ok", "underfitting", f"{falling}: no sign of underfitting")]


def _rule_perplexity(ctx: _Ctx) -> list[Finding]:
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


def _rule_diversity(ctx: _Ctx) -> list[Finding]:
    th, c = ctx.th, ctx.curves
    if c.diversity is None:
        return []
    div = float(c.diversity)
    lam, assumed = ctx.current_lambda()
    if div < th.diversity_collapse:
        if ctx.objective == "ce":
            msg = (
                f"diversity {_f(div)} < {_g(th.diversity_collapse)}: collapsed; "
                "expected for CE, a polychromic run targets it"
            )
            cmd = _command(_STANDARD_EXPERIMENT["polychromic"])
            return [Finding("monitor", "diversity_collapse", msg, cmd)]
        new = min(1.0, 2 * lam) if lam > 0 else _STANDARD_LAMBDA
        if new <= lam:
            msg = (
                f"diversity {_f(div)} < {_g(th.diversity_collapse)}: collapsed at "
                f"λ={_g(lam)}{assumed} already at the cap; raise n_generations instead"
            )
            return [Finding("act", "diversity_collapse", msg)]
        msg = (
            f"diversity {_f(div)} < {_g(th.diversity_collapse)}: collapsed; raise λ "
            f"from {_g(lam)}{assumed} to {_g(new)}"
        )
        cmd = _command(ctx.experiment, f"{DIVERSITY_WEIGHT_OVERRIDE}={_g(new)}")
        return [Finding("act", "diversity_collapse", msg, cmd)]
    if ctx.objective != "polychromic" or c.quality is None:
        return []
    quality = float(c.quality)
    if c.baseline_quality is not None:
        floor = float(c.baseline_quality) * (1 - th.quality_tolerance)
        ref = f"baseline {_f(c.baseline_quality)} − {th.quality_tolerance:.0%} = {_f(floor)}"
    else:
        floor = th.quality_poor
        ref = f"floor {_g(floor)}"
    poor = quality < floor
    numbers = f"diversity {_f(div)}, quality {_f(quality)} ({ref}), λ={_g(lam)}{assumed}"
    if div >= th.diversity_good and poor:
        new = lam / 2
        msg = (
            f"{numbers}: good diversity (≥ {_g(th.diversity_good)}) but poor quality; "
            f"lower λ to {_g(new)}"
        )
        cmd = _command(ctx.experiment, f"{DIVERSITY_WEIGHT_OVERRIDE}={_g(new)}")
        return [Finding("act", "quality_diversity", msg, cmd)]
    if div < th.diversity_good and not poor:
        new = min(1.0, 2 * lam) if lam > 0 else _STANDARD_LAMBDA
        msg = (
            f"{numbers}: good quality, diversity below {_g(th.diversity_good)}; "
            f"keep λ or raise it to {_g(new)}"
        )
        cmd = _command(ctx.experiment, f"{DIVERSITY_WEIGHT_OVERRIDE}={_g(new)}")
        return [Finding("monitor", "low_diversity", msg, cmd if new > lam else None)]
    if poor:
        msg = f"{numbers}: quality poor and diversity low: λ is not the issue; check the data"
        return [Finding("monitor", "quality_diversity", msg)]
    return [Finding("ok", "quality_diversity", f"{numbers}: quality and diversity both good")]


def _rule_dataset_size(ctx: _Ctx) -> list[Finding]:
    n = ctx.curves.n_train_examples
    if n is None:
        return []
    bucket = dataset_size_bucket(n)
    if bucket == BUCKET_SMALL:
        cmd = ctx.conservative_command()
        if cmd is None:
            msg = f"{n} training examples ({bucket}): already on a conservative config"
            return [Finding("ok", "dataset_size", msg)]
        msg = f"{n} training examples ({bucket}): very small dataset; use conservative configs"
        return [Finding("act", "dataset_size", msg, cmd)]
    if bucket == BUCKET_STANDARD:
        msg = (
            f"{n} training examples ({bucket}): rank 16 should work; monitor closely and "
            f"adjust if the gap exceeds 0.3 (now {_f(ctx.gap)})"
        )
        return [Finding("ok", "dataset_size", msg)]
    msg = f"{n} training examples ({bucket}): enough data for rank 16; try rank 32 as an ablation"
    return [Finding("ok", "dataset_size", msg, _command(ctx.experiment, RANK32_OVERRIDE))]


_RULES = (
    _rule_non_finite,
    _rule_gap,
    _rule_eval_rising,
    _rule_perplexity,
    _rule_dataset_size,
    _rule_diversity,
    _rule_underfitting,
)


def diagnose(curves: RunCurves, thresholds: Thresholds | None = None) -> Diagnosis:
    """Apply the overfitting decision matrix to one run's curves.

    Raises :class:`~polylora.errors.DataError` when the run has no train or eval loss points
    (nothing to judge) and :class:`~polylora.errors.ConfigError` for an unknown objective.
    """
    th = thresholds or Thresholds()
    ctx = _Ctx(curves, th)
    findings: list[Finding] = [f for rule in _RULES for f in rule(ctx)]
    findings.sort(key=lambda f: _RULE_PRIORITY.index(f.rule))
    level: Level = max((f.level for f in findings), key=_LEVEL_RANK.__getitem__)
    top = [f for f in findings if f.level == level]
    headline = top[0]
    next_command = headline.command or next((f.command for f in top if f.command), None)
    verdict = f"{_LEVEL_LABEL[level]}: {headline.message}"
    if level != "ok" and len(top) > 1:
        verdict += f" (+{len(top) - 1} more {level} finding(s))"
    return Diagnosis(findings=findings, verdict=verdict, next_command=next_command, level=level)
