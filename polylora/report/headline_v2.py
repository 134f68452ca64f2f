"""The headline's second design (SFT, then RL arms, then a temperature sweep): analysis and
Markdown report from the MLflow runs one launch logged.

Every number is read back from MLflow: a run's ``eval/*`` metrics and its
``eval/generations.jsonl`` (per prompt: pass@k, and which samples the checker accepted). Prompts
are split by kind (one constraint: start letter; two: start + length or end letter, by their
template: :func:`polylora.data.words.prompt_kind`). The statistics are compare's: Δ with a CI
from the crossed seeds × prompts model (:func:`polylora.report.comparison.compute.compare_groups`,
:func:`polylora.report.analysis.estimate`), non-inferiority, MDE. The outcome is stated in the
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

from polylora import intervals, plots, power
from polylora.data.words import CONSTRAINTS_OF_KIND, first_word, prompt_kind
from polylora.record import reader as mlruns
from polylora.report import analysis
from polylora.report.comparison.compute import compare_groups
from polylora.report.comparison.model import ComparisonResult, RunData
from polylora.report.markdown import table

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
    """The pre-registered rule (docs/results/headline_v2_plan.md, "Outcome")."""
    if not (math.isfinite(collapse.high) and collapse.high < 0):
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
    ni_ok = ni is None or ni.verdict.startswith("non-inferior")
    if primary.low > 0 and ni_ok and keeps.low > 0:
        return Outcome("supported", f"pass@1 RL collapses, polychromic keeps more distinct "
                       f"correct answers, beats pass@1 RL at the primary endpoint (CI "
                       f"[{primary.low:+.3f}, {primary.high:+.3f}]) and its frontier is not "
                       "inside CE's" + ("" if ni is None else f"; pass@1: {ni.verdict}"))
    return Outcome("inconclusive", f"the primary CI [{primary.low:+.3f}, {primary.high:+.3f}] "
                   f"holds both 0 and the smallest effect of interest {sesoi:g}, or a secondary "
                   "condition failed (non-inferiority, or polychromic keeping distinct answers)")


# --------------------------------------------------------------------------- report


def _ci(x: intervals.SeedInterval) -> str:
    if not math.isfinite(x.estimate):
        return "–"
    if not math.isfinite(x.low):
        return f"{x.estimate:.3f}"
    return f"{x.estimate:.3f} [{x.low:.3f}, {x.high:.3f}]"


def _delta(e: analysis.Effect) -> str:
    if not math.isfinite(e.delta):
        return f"not estimable ({e.method})"
    mde = f", MDE {e.mde:.3f}" if math.isfinite(e.mde) else ""
    return (f"Δ = {e.delta:+.3f} [{e.low:+.3f}, {e.high:+.3f}] ({e.method}, "
            f"{e.n_seeds} seeds × {e.n_prompts} prompts{mde})")


PASSK_KS = (1, 5, 10, 20)


def figures(loaded: Sequence[Loaded], folder: Path) -> dict[str, Path]:
    """The report's figures in ``folder``: pass@k curves of every arm on two-constraint prompts
    at the arms' own temperature, and the temperature frontier (:func:`frontier`'s points)."""
    own_t = train_temperature(loaded)
    arms = [a for a in ARMS if any(x.ref.arm == a for x in loaded)]
    series: dict[str, dict[int, plots.Interval]] = {}
    for arm in ["sft", *arms]:
        runs = ([x for x in loaded if x.ref.stage == "sft"] if arm == "sft"
                else at(loaded, arm, own_t))
        for k in PASSK_KS:
            if not any(f"pass@{k}" in r.per_prompt for r in runs):  # fewer samples than k
                continue
            ci = group_mean(runs, "two", f"pass@{k}")
            if math.isfinite(ci.estimate):
                low = ci.low if math.isfinite(ci.low) else ci.estimate
                high = ci.high if math.isfinite(ci.high) else ci.estimate
                series.setdefault(ARM_LABEL[arm], {})[k] = (ci.estimate, low, high)
    out = {"passk": plots.passk_curves(
        series, folder / "passk_two_constraint.png",
        title=f"pass@k, two-constraint prompts, T = {own_t:g} (mean over seeds, 95% CI)")}
    points = frontier(loaded, arms, "pass@10", analysis.Plan(primary="pass@10")).points
    out["frontier"] = plots.temperature_frontier(
        {ARM_LABEL[a]: p for a, p in points.items()}, folder / "temperature_frontier.png",
        title="two-constraint prompts: (pass@1, pass@10) per temperature")
    return out


def render(launch: Launch, loaded: Sequence[Loaded],
           figure_links: Mapping[str, str] | None = None) -> str:
    """The whole report, sections in :data:`SECTIONS` order; ``figure_links`` (``passk``,
    ``frontier`` → a path relative to the report) adds the figures under their sections."""
    links = dict(figure_links or {})
    plan = next((x.plan for x in loaded if x.plan and x.plan.primary), None) or analysis.Plan(
        primary="pass@10", noninferiority={"pass@1": 0.03})
    primary = plan.primary or "pass@10"
    metrics = [primary, *(m for m in plan.noninferiority if m != primary)]
    own_t = train_temperature(loaded)
    arms = [a for a in ARMS if any(x.ref.arm == a for x in loaded)]
    two = arm_comparison(loaded, "two", plan, metrics)
    prim = two.effect(CANDIDATE, primary)
    ni = next((two.effect(CANDIDATE, m) for m in plan.noninferiority), None)
    collapse = effect(at(loaded, REFERENCE, own_t), at(loaded, BASELINE, own_t), "two",
                      DISTINCT, plan)
    keeps = effect(at(loaded, BASELINE, own_t), at(loaded, CANDIDATE, own_t), "two", DISTINCT,
                   plan)
    front = frontier(loaded, arms, primary, plan)
    outcome = decide(prim, ni, collapse, keeps, front.inside.get(CANDIDATE, False),
                     launch.sesoi)
    n_kind = {k: len({p for x in loaded for p, v in x.kinds.items() if v == k}) for k in KINDS}
    samples = sorted({int(x.ref.seed) for x in loaded})
    out = [f"# Headline, second design: SFT then RL{' (smoke)' if launch.smoke else ''}", ""]
    out += ["## Outcome", "", f"**{outcome.word}**: {outcome.reason}.", "",
            f"Primary endpoint: {primary} on two-constraint prompts, {ARM_LABEL[CANDIDATE]} − "
            f"{ARM_LABEL[BASELINE]}: " + (_delta(prim) if prim else "not estimable") + ".", ""]
    out += ["## Design", "",
            f"- launch `{launch.launch_id}`, MLflow experiment `{launch.experiment}`; command: "
            f"`{launch.command}`",
            f"- seeds {', '.join(map(str, samples))}; stage 0: one CE (SFT) run per seed; stage 1 "
            f"from that seed's adapter: {', '.join(ARM_LABEL[a] for a in arms)}",
            f"- evaluation: {n_kind['two']} two-constraint and {n_kind['one']} one-constraint "
            f"test prompts; arms sampled at T = {own_t:g}; temperature sweep (evaluation only) "
            f"at T = {', '.join(f'{t:g}' for t in launch.temperatures)}",
            "- unit of analysis: the (seed, prompt) score, paired by seed and prompt across "
            "arms; seeds and prompts both random (crossed model, Satterthwaite df)",
            f"- smallest effect of interest {launch.sesoi:g} {primary}; non-inferiority margins "
            + (", ".join(f"{m} {v:g}" for m, v in plan.noninferiority.items()) or "none"), ""]
    run_rows = []
    for x in loaded:
        d2 = x.run_data("two", "").metrics
        run_rows.append([f"`{x.ref.run_id}`", x.ref.stage, ARM_LABEL[x.ref.arm], x.ref.seed,
                         f"{x.ref.temperature:g}", f"{x.metrics.get(primary, math.nan):.3f}",
                         f"{d2.get(primary, math.nan):.3f}", f"{d2.get('pass@1', math.nan):.3f}"])
    out += ["## Runs", "", *table(["run id", "stage", "arm", "seed", "T", f"{primary} (all)",
                                   f"{primary} (two-constraint)", "pass@1 (two-constraint)"],
                                  run_rows)]
    kind_rows = []
    for arm in ["sft", *arms]:
        runs = ([x for x in loaded if x.ref.stage == "sft"] if arm == "sft"
                else at(loaded, arm, own_t))
        for kind in (*KINDS, "all"):
            kind_rows.append([ARM_LABEL[arm], KIND_LABEL[kind],
                              *(_ci(group_mean(runs, kind, m))
                                for m in ("pass@1", primary, DISTINCT))])
    out += ["", "## Results per prompt kind", "",
            f"Mean over seeds [95 % t-interval] at T = {own_t:g}; distinct correct = different "
            "words the checker accepted among a prompt's samples.", "",
            *table(["arm", "kind", "pass@1", primary, "distinct correct"], kind_rows)]
    if "passk" in links:
        out += ["", f"![pass@k per arm on two-constraint prompts]({links['passk']})"]
    effect_rows = [[ARM_LABEL[e.group], e.metric, e.role if e.group == CANDIDATE else "secondary",
                    f"{e.delta:+.3f} [{e.low:+.3f}, {e.high:+.3f}]", f"{e.mde:.3f}", e.verdict]
                   for e in two.effects]
    out += ["", "## Primary endpoint", "",
            f"Two-constraint prompts, every arm against {ARM_LABEL[BASELINE]} (compare's "
            "statistics; polychromic's row is the pre-registered test, the others secondary):", "",
            *table(["arm", "metric", "role", "Δ [95 % CI]", "MDE", "verdict"], effect_rows)]
    out += ["", "## Mechanism check", "",
            f"- {ARM_LABEL[BASELINE]} − {ARM_LABEL[REFERENCE]}, distinct correct answers per "
            f"two-constraint prompt: {_delta(collapse)} — "
            + ("collapses" if collapse.high < 0 else "no collapse shown"),
            f"- {ARM_LABEL[CANDIDATE]} − {ARM_LABEL[BASELINE]}: {_delta(keeps)} — "
            + ("keeps more" if keeps.low > 0 else "not shown to keep more"), ""]
    out += ["## Temperature frontier", "",
            f"(pass@1, {primary}) on two-constraint prompts, mean over seeds. CE's best "
            f"temperature (highest {primary}): T = {front.ce_best:g}.", ""]
    temps = sorted({t for p in front.points.values() for t in p})
    front_rows = []
    for arm, pts in front.points.items():
        cells = [f"({pts[t][0]:.3f}, {pts[t][1]:.3f})" if t in pts else "–" for t in temps]
        inside = "–" if arm == REFERENCE else ("yes" if front.inside[arm] else "no")
        vs = _delta(front.versus_ce_best[arm]) if arm in front.versus_ce_best else "–"
        front_rows.append([ARM_LABEL[arm], *cells, inside, vs])
    out += table(["arm", *(f"T = {t:g}" for t in temps), "inside CE's frontier",
                  f"vs CE at T = {front.ce_best:g} ({primary})"], front_rows)
    if "frontier" in links:
        out += ["", f"![(pass@1, pass@10) per arm and temperature]({links['frontier']})"]
    out += ["", "## Notes", ""]
    out += [f"- {n}" for n in two.notes]
    if not two.notes and not launch.phases:
        out.append("- none")
    if launch.phases:
        out.append("- wall time per phase: " + ", ".join(
            f"{k} {v / 60:.1f} min" for k, v in launch.phases.items()))
    return "\n".join(out) + "\n"


def write_report(path: Path, launch: Launch, client: Any | None = None) -> Path:
    """Read the launch's runs back from MLflow and write the report to ``path``."""
    client = client or mlruns.get_client(launch.tracking_uri)
    loaded = load(client, launch, [f"pass@{k}" for k in PASSK_KS])
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent / f"{path.stem}_files"
    links = {name: f.relative_to(path.parent).as_posix()
             for name, f in figures(loaded, folder).items()}
    path.write_text(render(launch, loaded, links), encoding="utf-8")
    return path


def designs(loaded: Sequence[Loaded], n_samples_pilot: int, plan: analysis.Plan,
            seeds: Sequence[int], prompts: Sequence[int], samples: Sequence[int],
            kind: str = "two") -> tuple[analysis.Effect, list[power.Design]]:
    """The pilot's primary effect (polychromic − pass@1 RL on ``kind`` prompts) and the MDE of
    every seeds × prompts × samples design from its variance components
    (:func:`polylora.power.plan`, the ``polylora plan`` tool's function)."""
    own = train_temperature(loaded)
    e = effect(at(loaded, BASELINE, own), at(loaded, CANDIDATE, own), kind,
               plan.primary or "pass@10", plan)
    if e.components is None:
        raise ValueError(f"the pilot has no crossed estimate ({e.method})")
    found = power.plan(e.components, n_samples_pilot, math.inf, plan.alpha, plan.power,
                       seeds=tuple(seeds), prompts=tuple(prompts), samples=tuple(samples))
    return e, sorted(found, key=lambda d: (d.seeds, d.prompts, d.samples))
