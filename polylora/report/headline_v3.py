"""The headline's third design (SFT, then CE / pass@1 RL / pass@k RL / polychromic from it),
analysed from its committed tables alone: one row per (run, prompt) in ``per_prompt.csv`` and
one row per run in ``runs.csv``, so every number of the report reproduces from the CSV
(:func:`read_tables`, :func:`analyse`). The Markdown and figures: :mod:`.headline_v3_report`.

The pre-registration (docs/results/headline_v3_plan.md) fixes what is decided here:

- **manipulation check** (the mechanism can act): pass@1 RL sharpens, i.e. its distinct
  answers per correct sample fall below the SFT adapter's (Δ CI entirely below 0, all prompts),
  and polychromic's advantages point another way than pass@1 RL's in at least a third of its
  training groups (``train/differs_from_pass1``, mean over its runs);
- **primary endpoint**: pass@k at the plan's k on two-constraint prompts, polychromic − pass@1
  RL, crossed seeds × prompts CI; **non-inferiority** of pass@1 at the plan's margin;
- **outcome**: not testable here / falsified / supported / trade-off / inconclusive
  (:func:`decide`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from polylora.report.comparison.model import RunData
from polylora.stats import analysis, intervals, power

ARMS = ("ce", "grpo", "passk", "polychromic")
BASELINE, CANDIDATE = "grpo", "polychromic"
SHARPENING = "distinct_per_correct"
PASSK_KS = (1, 4, 8, 16, 32)
#: The per-prompt metrics the analysis reads (``per_prompt.csv``'s metric columns).
METRICS = (*(f"pass@{k}" for k in PASSK_KS), "correct_samples", "distinct_correct", SHARPENING)
#: The least share of polychromic's training groups whose signal must differ from pass@1 RL's.
MIN_DIFFERS = 1 / 3
OUTCOMES = ("supported", "trade-off", "falsified", "not testable here", "inconclusive")
PER_PROMPT_COLUMNS = ("run_id", "stage", "arm", "seed", "prompt_id", "kind")
RUN_COLUMNS = ("run_id", "stage", "arm", "seed", "differs_from_pass1", "train_steps")


@dataclass(frozen=True)
class Settings:
    """What the pre-registration fixed: the primary metric, the SESOI, the pass@1 margin."""

    primary: str = "pass@16"
    sesoi: float = 0.05
    margin: float = 0.03
    alpha: float = 0.05
    power: float = 0.8


@dataclass
class RunRow:
    """One run of ``runs.csv``."""

    run_id: str
    stage: str  # "sft" | "arm"
    arm: str  # "sft" or one of ARMS
    seed: int
    differs_from_pass1: float  # NaN for runs that did not sample
    train_steps: float


@dataclass
class Tables:
    """The two CSV tables: per-run rows and per-(run, prompt) scores."""

    runs: list[RunRow]
    scores: dict[str, dict[str, dict[str, float]]]  # run id → metric → prompt → score
    kinds: dict[str, str]  # prompt id → "one" | "two"

    def run_data(self, arm: str, kind: str, metric: str) -> list[RunData]:
        """The runs of ``arm`` as compare's :class:`RunData` on prompts of ``kind`` ("all":
        every prompt), one per seed."""
        out = []
        for r in self.runs:
            if r.arm != arm:
                continue
            per = {p: v for p, v in self.scores.get(r.run_id, {}).get(metric, {}).items()
                   if kind == "all" or self.kinds.get(p) == kind}
            means = {metric: float(np.mean(list(per.values())))} if per else {}
            out.append(RunData(r.run_id, arm, means, {metric: per}, seed=str(r.seed)))
        return out

    def mean(self, arm: str, kind: str, metric: str) -> intervals.SeedInterval:
        """Mean over seeds of the per-run prompt means, with its t-interval (NaN when no run
        has the metric, e.g. pass@32 from 16 samples)."""
        values = [m for r in self.run_data(arm, kind, metric)
                  if math.isfinite(m := r.metrics.get(metric, math.nan))]
        if not values:
            return intervals.SeedInterval(math.nan, math.nan, math.nan, 0, math.nan)
        return intervals.t_interval(values)

    def seeds_complete(self) -> list[int]:
        """Seeds with an SFT run and every arm."""
        have = {(r.seed, r.arm) for r in self.runs}
        return sorted({r.seed for r in self.runs
                       if all((r.seed, a) in have for a in ("sft", *ARMS))})


def write_tables(folder: Path, runs: Sequence[RunRow],
                 scores: dict[str, dict[str, dict[str, float]]],
                 kinds: dict[str, str]) -> tuple[Path, Path]:
    """``per_prompt.csv`` and ``runs.csv`` in ``folder`` (six significant digits, as read)."""
    folder.mkdir(parents=True, exist_ok=True)
    per_prompt, run_file = folder / "per_prompt.csv", folder / "runs.csv"
    with per_prompt.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([*PER_PROMPT_COLUMNS, *METRICS])
        for r in runs:
            own = scores.get(r.run_id, {})
            for p in sorted({p for s in own.values() for p in s}, key=lambda p: (len(p), p)):
                w.writerow([r.run_id, r.stage, r.arm, r.seed, p, kinds.get(p, ""),
                            *(f"{v:.6g}" if math.isfinite(v := own.get(m, {}).get(p, math.nan))
                              else "" for m in METRICS)])
    with run_file.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(RUN_COLUMNS)
        for r in runs:
            w.writerow([r.run_id, r.stage, r.arm, r.seed,
                        f"{r.differs_from_pass1:.6g}" if math.isfinite(r.differs_from_pass1)
                        else "", f"{r.train_steps:g}" if math.isfinite(r.train_steps) else ""])
    return per_prompt, run_file


def read_tables(folder: Path) -> Tables:
    """The tables :func:`write_tables` wrote, as the analysis reads them."""
    runs = []
    with (folder / "runs.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            runs.append(RunRow(row["run_id"], row["stage"], row["arm"], int(row["seed"]),
                               float(row["differs_from_pass1"] or "nan"),
                               float(row["train_steps"] or "nan")))
    scores: dict[str, dict[str, dict[str, float]]] = {}
    kinds: dict[str, str] = {}
    with (folder / "per_prompt.csv").open(encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["kind"]:
                kinds[row["prompt_id"]] = row["kind"]
            own = scores.setdefault(row["run_id"], {})
            for m in METRICS:
                if row.get(m):
                    own.setdefault(m, {})[row["prompt_id"]] = float(row[m])
    return Tables(runs, scores, kinds)


def effect(tables: Tables, base: str, cand: str, kind: str, metric: str,
           settings: Settings) -> analysis.Effect:
    """Δ = cand − base on ``metric`` over ``kind`` prompts, paired by seed and prompt (crossed
    seeds × prompts with two or more seeds), with its MDE."""
    e = analysis.estimate(tables.run_data(base, kind, metric),
                          tables.run_data(cand, kind, metric), metric, 0.95)
    if math.isfinite(e.se) and e.se > 0 and e.df >= 1:
        e.mde = power.mde(e.se, e.df, settings.alpha, settings.power)
    return e


def noninferiority(e: analysis.Effect, margin: float) -> str:
    """The verdict of ``e`` at ``margin`` (one-sided α 0.025), or why there is none."""
    if not (math.isfinite(e.se) and math.isfinite(e.df)):
        return "not estimable"
    return intervals.noninferiority(e.delta, e.se, e.df, margin).verdict


def differs_share(tables: Tables, arm: str = CANDIDATE) -> float:
    """Mean over ``arm``'s runs of the share of training groups whose signal differs from
    pass@1 RL's (NaN when none was logged)."""
    values = [r.differs_from_pass1 for r in tables.runs
              if r.arm == arm and math.isfinite(r.differs_from_pass1)]
    return float(np.mean(values)) if values else math.nan


@dataclass
class Outcome:
    """The outcome in the pre-registration's words, with the facts that decided it."""

    word: str
    reason: str


def decide(primary: analysis.Effect, ni_verdict: str, sharpening: analysis.Effect,
           differs: float, settings: Settings) -> Outcome:
    """The pre-registered rule (docs/results/headline_v3_plan.md, "Outcome"), in order."""
    if not math.isfinite(sharpening.high):
        return Outcome("inconclusive", "the sharpening of pass@1 RL could not be estimated "
                       f"({sharpening.method or 'no CI'}): the rule cannot be applied yet")
    if sharpening.high >= 0:
        return Outcome("not testable here", "pass@1 RL did not sharpen: its distinct answers "
                       "per correct sample did not fall below the SFT adapter's (Δ CI upper "
                       f"bound {sharpening.high:+.3f} is not below 0)")
    if not differs >= MIN_DIFFERS:
        return Outcome("not testable here", f"polychromic's signal differed from pass@1 RL's "
                       f"in {differs:.2f} of its training groups, under the {MIN_DIFFERS:.2f} "
                       "the mechanism needs")
    if not math.isfinite(primary.low):
        return Outcome("inconclusive", "the primary endpoint could not be estimated")
    span = f"[{primary.low:+.3f}, {primary.high:+.3f}]"
    if primary.high < settings.sesoi:
        return Outcome("falsified", f"the mechanism could act, yet polychromic − pass@1 RL's "
                       f"{settings.primary} CI {span} lies below the smallest effect of "
                       f"interest {settings.sesoi:g}")
    if primary.low > 0 and intervals.is_noninferior(ni_verdict):
        return Outcome("supported", f"the mechanism could act, polychromic beats pass@1 RL on "
                       f"{settings.primary} (CI {span}) and pass@1 is {ni_verdict}")
    if primary.low > 0:
        return Outcome("trade-off", f"polychromic beats pass@1 RL on {settings.primary} (CI "
                       f"{span}), but pass@1's non-inferiority at {settings.margin:g} is not "
                       f"shown ({ni_verdict}): the gain at k is bought with pass@1")
    return Outcome("inconclusive", f"the primary CI {span} holds both 0 and the smallest "
                   f"effect of interest {settings.sesoi:g}")


@dataclass
class Analysis:
    """Everything the report states, computed from the tables."""

    settings: Settings
    primary: analysis.Effect
    pass1: analysis.Effect
    ni_verdict: str
    sharpening: analysis.Effect
    differs: dict[str, float]  # arm → mean share of training groups differing from pass@1 RL
    secondary: dict[str, analysis.Effect]  # arm → its primary-metric Δ against pass@1 RL
    outcome: Outcome


def analyse(tables: Tables, settings: Settings) -> Analysis:
    """The pre-registered analysis of ``tables``."""
    primary = effect(tables, BASELINE, CANDIDATE, "two", settings.primary, settings)
    pass1 = effect(tables, BASELINE, CANDIDATE, "two", "pass@1", settings)
    ni = noninferiority(pass1, settings.margin)
    sharpening = effect(tables, "sft", BASELINE, "all", SHARPENING, settings)
    differs = {a: differs_share(tables, a) for a in ARMS}
    secondary = {a: effect(tables, BASELINE, a, "two", settings.primary, settings)
                 for a in ARMS if a not in (BASELINE, CANDIDATE)}
    outcome = decide(primary, ni, sharpening, differs[CANDIDATE], settings)
    return Analysis(settings, primary, pass1, ni, sharpening, differs, secondary, outcome)


# --------------------------------------------------------------------------- pilot


def prompt_paired(tables: Tables, base: str, cand: str, kind: str,
                  metric: str) -> tuple[intervals.SeedInterval, np.ndarray]:
    """One seed's Δ = cand − base over the prompts both scored, prompts as the unit (the
    pilot has one seed: no seed variance in this interval); returns it and the differences."""
    (b,), (c,) = tables.run_data(base, kind, metric), tables.run_data(cand, kind, metric)
    shared = sorted(set(b.per_prompt[metric]) & set(c.per_prompt[metric]))
    diffs = np.array([c.per_prompt[metric][p] - b.per_prompt[metric][p] for p in shared])
    if diffs.size == 0:
        return intervals.SeedInterval(math.nan, math.nan, math.nan, 0, math.nan), diffs
    return intervals.t_interval(diffs), diffs


def at_ceiling(tables: Tables, arm: str, kind: str, metric: str) -> float:
    """Share of ``kind`` prompts whose ``metric`` is 1 (no room left to differ) in ``arm``'s
    runs."""
    values = [v for r in tables.run_data(arm, kind, metric) for v in r.per_prompt[metric].values()]
    return float(np.mean([v >= 1 - 1e-9 for v in values])) if values else math.nan
