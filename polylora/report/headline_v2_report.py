"""The headline's second design, written out: the Markdown report (sections in
:data:`~polylora.report.headline_v2.SECTIONS` order) and its figures, from the runs one launch
logged (:mod:`polylora.report.headline_v2` reads and analyses them)."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from polylora.record import reader as mlruns
from polylora.render import plots
from polylora.render.markdown import table
from polylora.report.comparison.render import seed_level_cell
from polylora.report.headline_v2 import (
    ARM_LABEL,
    ARMS,
    BASELINE,
    CANDIDATE,
    DISTINCT,
    KIND_LABEL,
    KINDS,
    REFERENCE,
    Launch,
    Loaded,
    arm_comparison,
    at,
    decide,
    effect,
    frontier,
    group_mean,
    load,
    train_temperature,
)
from polylora.stats import analysis, intervals


def ci_cell(x: intervals.SeedInterval) -> str:
    """``mean [low, high]``, the mean alone without an interval, – without a mean."""
    if not math.isfinite(x.estimate):
        return "–"
    if not math.isfinite(x.low):
        return f"{x.estimate:.3f}"
    return f"{x.estimate:.3f} [{x.low:.3f}, {x.high:.3f}]"


def delta_text(e: analysis.Effect) -> str:
    """``Δ = … [low, high] (method, seeds × prompts, MDE)`` or why it is not estimable."""
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
    for arm in [*arms, "sft"]:  # arms first: each arm's colour as in the frontier figure
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
            f"{ARM_LABEL[BASELINE]}: " + (delta_text(prim) if prim else "not estimable") + ".", ""]
    done = complete_seeds(launch, loaded)
    if done != sorted(launch.seeds):
        out += [f"**Incomplete launch**: {len(done)} of {len(launch.seeds)} planned seeds have "
                f"every arm ({', '.join(map(str, done)) or 'none'}); the outcome above is not "
                "the design's. Continue with `python launchers/headline.py --v2 --resume`.", ""]
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
                              *(ci_cell(group_mean(runs, kind, m))
                                for m in ("pass@1", primary, DISTINCT))])
    out += ["", "## Results per prompt kind", "",
            f"Mean over seeds [95 % t-interval] at T = {own_t:g}; distinct correct = different "
            "words the checker accepted among a prompt's samples.", "",
            *table(["arm", "kind", "pass@1", primary, "distinct correct"], kind_rows)]
    if "passk" in links:
        out += ["", f"![pass@k per arm on two-constraint prompts]({links['passk']})"]
    effect_rows = [[ARM_LABEL[e.group], e.metric, e.role if e.group == CANDIDATE else "secondary",
                    f"{e.delta:+.3f} [{e.low:+.3f}, {e.high:+.3f}]", seed_level_cell(e),
                    f"{e.mde:.3f}", e.verdict]
                   for e in two.effects]
    out += ["", "## Primary endpoint", "",
            f"Two-constraint prompts, every arm against {ARM_LABEL[BASELINE]} (compare's "
            "statistics; polychromic's row is the pre-registered test, the others secondary):", "",
            *table(["arm", "metric", "role", "Δ [95 % CI]", "seed-level t over seed means "
                    "[95 % CI]", "MDE", "verdict"], effect_rows)]
    out += ["", "## Mechanism check", "",
            f"- {ARM_LABEL[BASELINE]} − {ARM_LABEL[REFERENCE]}, distinct correct answers per "
            f"two-constraint prompt: {delta_text(collapse)} — "
            + ("collapses" if collapse.high < 0 else "no collapse shown"),
            f"- {ARM_LABEL[CANDIDATE]} − {ARM_LABEL[BASELINE]}: {delta_text(keeps)} — "
            + ("keeps more" if keeps.low > 0 else "not shown to keep more"), ""]
    out += ["## Temperature frontier", "",
            f"(pass@1, {primary}) on two-constraint prompts, mean over seeds. CE's best "
            f"temperature (highest {primary}): T = {front.ce_best:g}.", ""]
    temps = sorted({t for p in front.points.values() for t in p})
    front_rows = []
    for arm, pts in front.points.items():
        cells = [f"({pts[t][0]:.3f}, {pts[t][1]:.3f})" if t in pts else "–" for t in temps]
        inside = "–" if arm == REFERENCE else ("yes" if front.inside[arm] else "no")
        vs = delta_text(front.versus_ce_best[arm]) if arm in front.versus_ce_best else "–"
        front_rows.append([ARM_LABEL[arm], *cells, inside, vs])
    out += table(["arm", *(f"T = {t:g}" for t in temps), "inside CE's frontier",
                  f"vs CE at T = {front.ce_best:g} ({primary})"], front_rows)
    if "frontier" in links:
        out += ["", f"![(pass@1, pass@10) per arm and temperature]({links['frontier']})"]
    out += ["", "## Notes", ""]
    out += [f"- {n}" for n in two.notes]
    if "per_prompt" in links:
        csv_link = links["per_prompt"]
        out.append(f"- every run's per-prompt scores (the analysis's input): [{csv_link}]"
                   f"({csv_link})")
    if not two.notes and not launch.phases and "per_prompt" not in links:
        out.append("- none")
    if launch.phases:
        out.append("- wall time per phase: " + ", ".join(
            f"{k} {v / 60:.1f} min" for k, v in launch.phases.items()))
    return "\n".join(out) + "\n"


def complete_seeds(launch: Launch, loaded: Sequence[Loaded]) -> list[int]:
    """The launch's seeds whose every stage-1 arm has a run (a launch still running or
    interrupted has fewer)."""
    have = {(x.ref.seed, x.ref.arm) for x in loaded if x.ref.stage == "arm"}
    return sorted(s for s in launch.seeds if all((s, a) in have for a in launch.arms))


PER_PROMPT_COLUMNS = ("run_id", "stage", "arm", "seed", "temperature", "prompt_id", "kind")


def write_per_prompt(loaded: Sequence[Loaded], path: Path) -> Path:
    """Every run's per-prompt scores as CSV (one row per run and prompt), so the analysis can
    be redone without the MLflow store."""
    metrics = sorted({m for x in loaded for m in x.per_prompt},
                     key=lambda m: (not m.startswith("pass@"), len(m), m))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([*PER_PROMPT_COLUMNS, *metrics])
        for x in loaded:
            prompts = sorted({p for s in x.per_prompt.values() for p in s},
                             key=lambda p: (len(p), p))
            for p in prompts:
                w.writerow([x.ref.run_id, x.ref.stage, x.ref.arm, x.ref.seed,
                            f"{x.ref.temperature:g}", p, x.kinds.get(p, ""),
                            *(f"{v:.6g}" if math.isfinite(v := x.per_prompt.get(m, {}).get(
                                p, math.nan)) else "" for m in metrics)])
    return path


def write_report(path: Path, launch: Launch, client: Any | None = None,
                 from_tables: bool = False) -> Path:
    """Read the launch's runs back from MLflow and write the report to ``path``, its figures
    and per-prompt scores to ``<stem>_files/``. (This design's report always reads MLflow:
    ``from_tables`` is refused with the reason.)"""
    if from_tables:
        raise SystemExit("error: the second design's report reads its runs from MLflow (its "
                         "per-prompt CSV has no training metrics); drop --from-tables")
    client = client or mlruns.get_client(launch.tracking_uri)
    loaded = load(client, launch, [f"pass@{k}" for k in PASSK_KS])
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent / f"{path.stem}_files"
    files = {**figures(loaded, folder), "per_prompt": write_per_prompt(
        loaded, folder / "per_prompt.csv")}
    links = {name: f.relative_to(path.parent).as_posix() for name, f in files.items()}
    path.write_text(render(launch, loaded, links), encoding="utf-8")
    return path


