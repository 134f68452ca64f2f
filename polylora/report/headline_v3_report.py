"""The headline's third design, written out: the runs of one launch read back from MLflow into
the two committed tables, then the Markdown report and its figures from those tables alone
(:mod:`polylora.report.headline_v3` analyses them), so ``--report-only`` on the tables gives the
same report without the store."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from polylora.record import names
from polylora.record import reader as mlruns
from polylora.render import plots
from polylora.render.markdown import table
from polylora.report.headline_v2 import ARM_LABEL, KIND_LABEL, Launch, load_run
from polylora.report.headline_v2_report import ci_cell, delta_text
from polylora.report.headline_v3 import (
    ARMS,
    BASELINE,
    CANDIDATE,
    METRICS,
    MIN_DIFFERS,
    PASSK_KS,
    SHARPENING,
    Analysis,
    RunRow,
    Settings,
    Tables,
    analyse,
    read_tables,
    write_tables,
)

SECTIONS = ("Outcome", "Design", "Runs", "Results per prompt kind", "Primary endpoint",
            "Manipulation check", "Notes")
TABLES_FOLDER = "headline_v3_files"


def collect(client: Any, launch: Launch) -> tuple[list[RunRow], dict[str, Any], dict[str, str]]:
    """The launch's runs from MLflow: one :class:`RunRow` each, their per-prompt scores and
    the prompts' kinds."""
    rows, scores, kinds = [], {}, {}
    for ref in launch.runs:
        loaded = load_run(client, ref, METRICS)
        scores[ref.run_id] = {m: s for m, s in loaded.per_prompt.items() if m in METRICS}
        kinds.update(loaded.kinds)
        history = mlruns.metric_history(client, ref.run_id, names.TRAIN_DIFFERS_FROM_PASS1)
        steps = mlruns.final_value(client, ref.run_id, names.TRAIN_STEPS)
        rows.append(RunRow(ref.run_id, ref.stage, ref.arm, ref.seed,
                           float(np.mean([v for _, v in history])) if history else math.nan,
                           float(steps) if steps is not None else math.nan))
    return rows, scores, kinds


def figures(tables: Tables, folder: Path) -> dict[str, Path]:
    """pass@k curves per arm on two-constraint prompts, and each run's (distinct answers per
    correct sample, pass@1) on all prompts: where sharpening shows."""
    series: dict[str, dict[int, plots.Interval]] = {}
    points: list[tuple[str, float, float]] = []
    for arm in [*ARMS, "sft"]:
        for k in PASSK_KS:
            ci = tables.mean(arm, "two", f"pass@{k}")
            if math.isfinite(ci.estimate):
                low = ci.low if math.isfinite(ci.low) else ci.estimate
                high = ci.high if math.isfinite(ci.high) else ci.estimate
                series.setdefault(ARM_LABEL[arm], {})[k] = (ci.estimate, low, high)
        pass1 = {r.run_id: r.metrics.get("pass@1", math.nan)
                 for r in tables.run_data(arm, "all", "pass@1")}
        points += [(ARM_LABEL[arm], pass1.get(r.run_id, math.nan),
                    r.metrics.get(SHARPENING, math.nan))
                   for r in tables.run_data(arm, "all", SHARPENING)]
    return {
        "passk": plots.passk_curves(series, folder / "passk_two_constraint.png",
                                    title="pass@k, two-constraint prompts (mean over seeds, "
                                          "95% CI)"),
        "sharpening": plots.quality_diversity_scatter(
            points, folder / "sharpening.png", quality_name="pass@1 (all prompts)",
            diversity_name="distinct answers per correct sample"),
    }


def render(launch: Launch, tables: Tables, result: Analysis,
           links: Mapping[str, str] | None = None) -> str:
    """The report, sections in :data:`SECTIONS` order, every number from ``tables``."""
    links = dict(links or {})
    s, prim = result.settings, result.settings.primary
    seeds = sorted({r.seed for r in tables.runs})
    complete = tables.seeds_complete()
    n_kind = {k: sum(1 for v in tables.kinds.values() if v == k) for k in ("two", "one")}
    out = [f"# Headline, third design: where polychromic and pass@1 RL can differ"
           f"{' (smoke)' if launch.smoke else ''}", ""]
    out += ["## Outcome", "", f"**{result.outcome.word}**: {result.outcome.reason}.", "",
            f"Primary endpoint: {prim} on two-constraint prompts, {ARM_LABEL[CANDIDATE]} − "
            f"{ARM_LABEL[BASELINE]}: {delta_text(result.primary)}.", ""]
    if complete != sorted(launch.seeds):
        out += [f"**Incomplete launch**: {len(complete)} of {len(launch.seeds)} planned seeds "
                f"have every arm ({', '.join(map(str, complete)) or 'none'}); the outcome above "
                "is not the design's. Continue with `python launchers/headline.py --v3 "
                "--resume`.", ""]
    out += ["## Design", "",
            f"- launch `{launch.launch_id}`, MLflow experiment `{launch.experiment}`; command: "
            f"`{launch.command}`",
            f"- seeds {', '.join(map(str, seeds))}; stage 0: one SFT (CE) run per seed; stage 1 "
            f"from its adapter: {', '.join(ARM_LABEL[a] for a in ARMS)}",
            f"- evaluation: {n_kind['two']} two-constraint and {n_kind['one']} one-constraint "
            "test prompts",
            "- unit of analysis: the (seed, prompt) score, paired by seed and prompt; seeds and "
            "prompts both random (crossed model, Satterthwaite df)",
            f"- smallest effect of interest {s.sesoi:g} {prim}; non-inferiority margin on "
            f"pass@1 {s.margin:g}", ""]
    by_run = {r.run_id: r for r in tables.runs}
    run_rows = []
    for r in tables.runs:
        two = tables.run_data(r.arm, "two", prim)
        mine = next((x.metrics.get(prim, math.nan) for x in two if x.run_id == r.run_id),
                    math.nan)
        run_rows.append([f"`{r.run_id}`", r.stage, ARM_LABEL[r.arm], r.seed,
                         f"{mine:.3f}", "–" if not math.isfinite(r.differs_from_pass1)
                         else f"{r.differs_from_pass1:.3f}"])
    out += ["## Runs", "", *table(["run id", "stage", "arm", "seed", f"{prim} (two-constraint)",
                                   "groups differing from pass@1 RL"], run_rows)]
    metric_cols = ["pass@1", prim, f"pass@{max(PASSK_KS)}", SHARPENING]
    kind_rows = [[ARM_LABEL[a], KIND_LABEL[k],
                  *(ci_cell(tables.mean(a, k, m)) for m in metric_cols)]
                 for a in ["sft", *ARMS] for k in ("two", "one", "all")]
    out += ["", "## Results per prompt kind", "",
            "Mean over seeds [95 % t-interval]; distinct_per_correct = different correct answers "
            "per correct sample (prompts with one or more correct samples).", "",
            *table(["arm", "kind", *metric_cols], kind_rows)]
    if "passk" in links:
        out += ["", f"![pass@k per arm on two-constraint prompts]({links['passk']})"]
    rows = [[ARM_LABEL[CANDIDATE], prim, "primary", delta_text(result.primary)],
            [ARM_LABEL[CANDIDATE], "pass@1", f"non-inferiority: {result.ni_verdict}",
             delta_text(result.pass1)]]
    rows += [[ARM_LABEL[a], prim, "secondary", delta_text(e)] for a, e in result.secondary.items()]
    out += ["", "## Primary endpoint", "",
            f"Two-constraint prompts, against {ARM_LABEL[BASELINE]}:", "",
            *table(["arm", "metric", "role", "Δ [95 % CI]"], rows)]
    differs = ", ".join(f"{ARM_LABEL[a]} {v:.3f}" for a, v in result.differs.items()
                        if math.isfinite(v))
    out += ["", "## Manipulation check", "",
            f"- pass@1 RL sharpens: {ARM_LABEL[BASELINE]} − SFT on {SHARPENING}, all prompts: "
            f"{delta_text(result.sharpening)} — "
            + ("sharpens" if result.sharpening.high < 0 else "not shown to sharpen"),
            f"- share of training groups whose advantages differ from pass@1 RL's (mean over "
            f"runs; needed ≥ {MIN_DIFFERS:.2f} for polychromic): {differs or 'none logged'}",
            ""]
    if "sharpening" in links:
        out += [f"![pass@1 against distinct answers per correct sample]({links['sharpening']})",
                ""]
    out += ["## Notes", ""]
    inputs = [f"[{links[n]}]({links[n]})" for n in ("per_prompt", "runs") if n in links]
    if inputs:
        out.append(f"- the analysis's input, from which every number above reproduces: "
                   f"{' and '.join(inputs)}; regenerate the report from them alone: "
                   "`python launchers/headline.py --v3 --report-only --from-tables`")
    phases = {k: v for k, v in launch.phases.items() if v > 0}
    if phases:
        out.append("- wall time per phase: " + ", ".join(
            f"{k} {v / 60:.1f} min" for k, v in phases.items()))
    out.append(f"- {len(by_run)} runs")
    return "\n".join(out) + "\n"


def write_report(path: Path, launch: Launch, client: Any | None = None,
                 settings: Settings | None = None, from_tables: bool = False) -> Path:
    """Read the launch's runs from MLflow into ``<stem>_files/{per_prompt,runs}.csv`` (or,
    with ``from_tables``, keep the tables there), then write the report and figures from the
    tables alone."""
    folder = path.parent / f"{path.stem}_files"
    if not from_tables:
        client = client or mlruns.get_client(launch.tracking_uri)
        write_tables(folder, *collect(client, launch))
    tables = read_tables(folder)
    settings = settings or Settings(sesoi=launch.sesoi)
    result = analyse(tables, settings)
    files = {**figures(tables, folder), "per_prompt": folder / "per_prompt.csv",
             "runs": folder / "runs.csv"}
    links = {name: f.relative_to(path.parent).as_posix() for name, f in files.items()}
    path.write_text(render(launch, tables, result, links), encoding="utf-8")
    return path
