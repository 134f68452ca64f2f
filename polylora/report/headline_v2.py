"""The headline's second design (SFT, then RL arms, then a temperature sweep): the runs of one
launch read back from MLflow and analysed (the report itself: :mod:`.headline_v2_report`).

Every number is read back from MLflow: a run's ``eval/*`` metrics and its
``eval/generations.jsonl`` (per prompt: pass@k, and which samples the checker accepted). Prompts
are split by kind (one constraint: start letter; two: start + length or end letter, by their
template: :func:`polylora.data.words.prompt_kind`). The statistics are compare's: Δ with a CI
from the crossed seeds × prompts model (:func:`polylora.report.comparison.compute.compare_groups`,
:func:`polylora.stats.analysis.estimate`), non-inferiority, MDE. The outcome is stated in the
pre-registration's words (docs/results/headline_v2_plan.md): supported, falsified, not testable
here, or inconclusive.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from polylora.data.words import CONSTRAINTS_OF_KIND, first_word, prompt_kind
from polylora.record import reader as mlruns
from polylora.report.comparison.compute import compare_groups
from polylora.report.comparison.model import ComparisonResult, RunData
from polylora.stats import analysis, intervals, power

ARMS = ("ce", "grpo", "polychromic", "passk")
ARM_LABEL = {"sft": "SFT (stage 0)", "ce": "CE continued", "grpo": "pass@1 RL (GRPO)",
             "polychromic": "polychromic", "passk": "pass@k RL"}
BASELINE, CANDIDATE, REFERENCE = "grpo", "polychromic", "ce"
KINDS = ("two", "one")  # two-constraint prompts first: the primary endpoint's subset
KIND_LABEL = {"two": "two-constraint", "one": "one-constraint", "all": "all prompts"}
DISTINCT = "distinct_correct"  # distinct correct answers per prompt (mechanism check)
SECTIONS = ("Outcome", "Design", "Runs", "Results per prompt kind", "Primary endpoint",
            "Mechanism check", "Temperature frontier", "Notes")
OUTCOMES = ("supported", "falsified", "not testable here", "inconclusive")


@dataclass
class RunRef:
    """One MLflow run of the launch: stage ``sft`` | ``arm`` | ``temperature``."""

    run_id: str
    stage: str
    arm: str
    seed: int
    temperature: float


@dataclass
class Launch:
    """What one launch ran (written as JSON next to the report; the report's only input
    besides MLflow)."""

    launch_id: str
    experiment: str
    tracking_uri: str
    seeds: list[int]
    arms: list[str]
    temperatures: list[float]
    command: str
    sesoi: float
    runs: list[RunRef] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    smoke: bool = False
    #: The experiment files' prefix (``headline_v2``, ``headline_v3``): which design ran.
    design: str = "headline_v2"
    #: One entry per start and resume: code revision, library versions, command line
    #: (:func:`polylora.record.provenance.provenance`), so the runs' code can be checked from the
    #: record.
    provenance: list[dict[str, str]] = field(default_factory=list)

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> Launch:
        raw = json.loads(path.read_text(encoding="utf-8"))
        raw["runs"] = [RunRef(**r) for r in raw.get("runs", [])]
        return cls(**raw)


@dataclass
class Loaded:
    """One run read back: its overall metrics and per-kind prompt scores."""

    ref: RunRef
    metrics: dict[str, float]
    per_prompt: dict[str, dict[str, float]]  # metric → prompt id → score
    kinds: dict[str, str]  # prompt id → "one" | "two"
    plan: analysis.Plan | None = None

    def run_data(self, kind: str, group: str) -> RunData:
        """The run as compare's :class:`RunData`, restricted to prompts of ``kind`` ("all":
        every prompt); its values are the means over those prompts."""
        ids = {p for p, k in self.kinds.items() if kind in ("all", k)}
        pp = {m: {p: v for p, v in s.items() if p in ids} for m, s in self.per_prompt.items()}
        means = {m: float(np.mean(list(s.values()))) for m, s in pp.items() if s}
        return RunData(self.ref.run_id, group, means, pp, seed=str(self.ref.seed))


def distinct_correct(row: Mapping[str, Any]) -> float:
    """How many different words among a prompt's samples the checker accepted."""
    flags = row.get("correct") or []
    words = {first_word(s) for s, ok in zip(row.get("samples") or [], flags, strict=False) if ok}
    return float(len(words - {None}))


def constraints(row: Mapping[str, Any]) -> str | None:
    """"one" or "two" (letter constraints of the prompt), None for a prompt of another task."""
    kind = prompt_kind(row["prompt"]) if isinstance(row.get("prompt"), str) else None
    return None if kind is None else ("one" if CONSTRAINTS_OF_KIND[kind] == 1 else "two")


def load_run(client: Any, ref: RunRef, metrics: Sequence[str]) -> Loaded:
    """Read one run's metrics and generations back from MLflow."""
    info = mlruns.get_run(client, ref.run_id)
    rows = mlruns.load_generations(client, ref.run_id) or []
    per_prompt = mlruns.per_prompt_scores(rows, metrics)
    per_prompt[DISTINCT] = {str(r["id"]): distinct_correct(r) for r in rows}
    kinds = {str(r["id"]): k for r in rows if (k := constraints(r))}
    return Loaded(ref, mlruns.eval_metrics(info), per_prompt, kinds,
                  analysis.Plan.from_params(info.params))


def load(client: Any, launch: Launch, metrics: Sequence[str]) -> list[Loaded]:
    """Every run of the launch, read back."""
    return [load_run(client, r, metrics) for r in launch.runs]


# --------------------------------------------------------------------------- analysis


def at(loaded: Sequence[Loaded], arm: str, temperature: float) -> list[Loaded]:
    """The runs of ``arm`` evaluated at ``temperature`` (training runs and sweep runs alike)."""
    return [x for x in loaded if x.ref.arm == arm and x.ref.stage != "sft"
            and math.isclose(x.ref.temperature, temperature)]


def train_temperature(loaded: Sequence[Loaded]) -> float:
    """The sampling temperature of the stage-1 runs (the arms' own evaluation)."""
    temps = {x.ref.temperature for x in loaded if x.ref.stage == "arm"}
    if len(temps) != 1:
        raise ValueError(f"stage-1 runs were evaluated at several temperatures: {temps}")
    return temps.pop()


def group_mean(runs: Sequence[Loaded], kind: str, metric: str) -> intervals.SeedInterval:
    """Mean over seeds of the runs' ``metric`` on prompts of ``kind``, with its t-interval."""
    values = [v for r in runs if math.isfinite(v := r.run_data(kind, "").metrics.get(
        metric, math.nan))]
    return intervals.t_interval(values)


def arm_comparison(loaded: Sequence[Loaded], kind: str, plan: analysis.Plan,
                   metrics: Sequence[str]) -> ComparisonResult:
    """Every stage-1 arm against pass@1 RL on ``kind`` prompts (compare's statistics)."""
    t = train_temperature(loaded)
    runs = [x.run_data(kind, x.ref.arm) for x in loaded if x.ref.stage == "arm"
            and math.isclose(x.ref.temperature, t)]
    return compare_groups(runs, BASELINE, list(metrics), plan)


def effect(base: Sequence[Loaded], cand: Sequence[Loaded], kind: str, metric: str,
           plan: analysis.Plan) -> analysis.Effect:
    """Δ = cand − base on ``metric`` over ``kind`` prompts, paired by seed and prompt, with its
    MDE (for metrics the registry does not know, e.g. distinct correct answers)."""
    e = analysis.estimate([r.run_data(kind, "b") for r in base],
                          [r.run_data(kind, "c") for r in cand], metric, 0.95)
    if math.isfinite(e.se) and e.se > 0 and e.df >= 1:
        e.mde = power.mde(e.se, e.df, plan.alpha, plan.power)
    return e


@dataclass
class Frontier:
    """Each arm's (pass@1, pass@10) on two-constraint prompts at every temperature."""

    points: dict[str, dict[float, tuple[float, float]]]  # arm → T → (pass@1, pass@primary)
    ce_best: float  # CE's temperature with the highest primary metric
    inside: dict[str, bool]  # arm → every point weakly dominated by a CE point
    versus_ce_best: dict[str, analysis.Effect]  # arm at its own T vs CE at its best T


def frontier(loaded: Sequence[Loaded], arms: Sequence[str], primary: str,
             plan: analysis.Plan) -> Frontier:
    """The temperature frontier of every arm against CE's (diversity bought by temperature
    alone is not a win)."""
    temps = sorted({x.ref.temperature for x in loaded if x.ref.stage != "sft"})
    points: dict[str, dict[float, tuple[float, float]]] = {}
    for arm in arms:
        for t in temps:
            runs = at(loaded, arm, t)
            if runs:
                points.setdefault(arm, {})[t] = (group_mean(runs, "two", "pass@1").estimate,
                                                 group_mean(runs, "two", primary).estimate)
    ce = points.get(REFERENCE, {})
    ce_best = max(ce, key=lambda t: ce[t][1]) if ce else math.nan
    inside = {
        arm: bool(ce) and all(any(c1 >= p1 and c10 >= p10 for c1, c10 in ce.values())
                              for p1, p10 in pts.values())
        for arm, pts in points.items() if arm != REFERENCE
    }
    own = train_temperature(loaded)
    versus = {arm: effect(at(loaded, REFERENCE, ce_best), at(loaded, arm, own), "two", primary,
                          plan)
              for arm in points if arm != REFERENCE and ce}
    return Frontier(points, ce_best, inside, versus)


@dataclass
class Outcome:
    """The outcome in the pre-registration's words, with the facts that decided it."""

    word: str
    reason: str


def decide(primary: analysis.Effect | None, ni: analysis.Effect | None,
           collapse: analysis.Effect, keeps: analysis.Effect, inside: bool,
           sesoi: float) -> Outcome:
    """The pre-registered rule (docs/results/headline_v2_plan.md, "Outcome"). A collapse that
    could not be estimated (e.g. fewer than two seeds finished) is inconclusive, not "not
    testable": the rule's first step needs a CI to read."""
    if not math.isfinite(collapse.high):
        return Outcome("inconclusive", "the collapse of pass@1 RL could not be estimated "
                       f"({collapse.method or 'no CI'}): the rule cannot be applied yet")
    if collapse.high >= 0:
        return Outcome("not testable here", "pass@1 RL did not lose distinct correct answers per "
                       "prompt against CE continued (Δ CI upper bound "
                       f"{collapse.high:+.3f} is not below 0): the mechanism cannot act")
    if primary is None or not math.isfinite(primary.low):
        return Outcome("inconclusive", "the primary endpoint could not be estimated")
    if primary.high < sesoi:
        return Outcome("falsified", f"pass@1 RL collapses, yet polychromic − pass@1 RL's CI "
                       f"[{primary.low:+.3f}, {primary.high:+.3f}] lies below the smallest effect "
                       f"of interest {sesoi:g}")
    if inside:
        return Outcome("falsified", "pass@1 RL collapses, yet polychromic's (pass@1, pass@10) "
                       "frontier over temperatures sits inside CE's")
    ni_ok = ni is None or intervals.is_noninferior(ni.verdict)
    if primary.low > 0 and ni_ok and keeps.low > 0:
        return Outcome("supported", f"pass@1 RL collapses, polychromic keeps more distinct "
                       f"correct answers, beats pass@1 RL at the primary endpoint (CI "
                       f"[{primary.low:+.3f}, {primary.high:+.3f}]) and its frontier is not "
                       "inside CE's" + ("" if ni is None else f"; pass@1: {ni.verdict}"))
    return Outcome("inconclusive", f"the primary CI [{primary.low:+.3f}, {primary.high:+.3f}] "
                   f"holds both 0 and the smallest effect of interest {sesoi:g}, or a secondary "
                   "condition failed (non-inferiority, or polychromic keeping distinct answers)")


def designs(loaded: Sequence[Loaded], n_samples_pilot: int, plan: analysis.Plan,
            seeds: Sequence[int], prompts: Sequence[int], samples: Sequence[int],
            kind: str = "two") -> tuple[analysis.Effect, list[power.Design]]:
    """The pilot's primary effect (polychromic − pass@1 RL on ``kind`` prompts) and the MDE of
    every seeds × prompts × samples design from its variance components
    (:func:`polylora.stats.power.plan`, the ``polylora plan`` tool's function)."""
    own = train_temperature(loaded)
    e = effect(at(loaded, BASELINE, own), at(loaded, CANDIDATE, own), kind,
               plan.primary or "pass@10", plan)
    if e.components is None:
        raise ValueError(f"the pilot has no crossed estimate ({e.method})")
    found = power.plan(e.components, n_samples_pilot, math.inf, plan.alpha, plan.power,
                       seeds=tuple(seeds), prompts=tuple(prompts), samples=tuple(samples))
    return e, sorted(found, key=lambda d: (d.seeds, d.prompts, d.samples))
