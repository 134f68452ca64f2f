"""The headline report (``docs/results/headline.md``): polychromic vs CE on the builtin task.

Long module (~770 lines): one report, its sections rendered from one set of inputs.

Written by ``launchers/headline.py`` after ``polylora compare``; every number comes from the
comparison's ``summary.csv`` / ``tests.csv`` (means over seeds with t-intervals; Δ with its CI,
the role and verdict of every metric) or straight from the MLflow runs (setup, wall times,
per-run values), and the report names the run ids. The outcome paragraph is generated from the
effects (:func:`outcome`): the declared primary endpoint decides, quality is judged by
non-inferiority, and a null result states the minimum detectable effect.

Regenerate from logged runs without re-running anything::

    python -m polylora.report.headline --experiment headline --launch-id ID \\
        --compare-dir docs/results/headline_files --out docs/results/headline.md

(or ``python launchers/headline.py --report-only --launch-id ID``, which re-runs compare too).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from polylora import stats
from polylora.errors import PolyloraError
from polylora.record import reader as mlruns
from polylora.report.markdown import row as _row

__all__ = [
    "SECTIONS",
    "TABLE_METRICS",
    "GroupCost",
    "ReportInputs",
    "SummaryCell",
    "TestCell",
    "main",
    "outcome",
    "read_summary",
    "read_tests",
    "render",
    "write_report",
]

#: The report's sections, in order (``## <name>`` headings; tests check every one is there).
SECTIONS = (
    "Research question",
    "Outcome",
    "Setup",
    "Results",
    "Significance tests",
    "Cost",
    "Plots",
    "λ sweep",
    "MLflow runs",
    "Reproduce",
)
#: Columns of the results table (registry names), in order.
TABLE_METRICS = ("pass@1", "pass@3", "pass@5", "pass@10", "accuracy", "sample_accuracy",
                 "self_bleu", "distinct_1", "distinct_2", "semantic_diversity")
#: Metrics the outcome paragraph discusses: the question (pass@k), single-generation quality,
#: diversity.
PASSK_METRICS = ("pass@1", "pass@3", "pass@5", "pass@10")
QUALITY_METRICS = ("pass@1", "accuracy")
DIVERSITY_METRICS = ("semantic_diversity", "self_bleu", "distinct_1")
ZERO_SHOT, FEW_SHOT = "zero_shot", "few_shot"
#: DESIGN.md: a task shows a pass@k difference between objectives only if the fine-tuned
#: model's pass@1 lands mid-range.
MID_RANGE = (0.2, 0.6)
RESEARCH_QUESTION = (
    "Does diversity-aware optimization (polychromic LoRA) improve pass@k while keeping "
    "single-generation quality, compared with standard (cross-entropy) LoRA fine-tuning?"
)


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class SummaryCell:
    """One (group, metric) row of compare's ``summary.csv``."""

    group: str
    metric: str
    higher_is_better: bool
    n_runs: int
    mean: float
    low: float
    high: float
    n_prompts: int


@dataclass(frozen=True)
class TestCell:
    """One row of compare's ``tests.csv``: the candidate vs the baseline on one metric."""

    __test__ = False  # not a pytest class

    group: str
    metric: str
    role: str  # primary | secondary | non-inferiority | excluded
    method: str
    n_seeds: int
    n_prompts: int
    delta: float  # candidate − baseline, native units
    low: float
    high: float
    p: float
    p_holm: float
    mde: float
    verdict: str
    reason: str = ""
    seed_p: float = math.nan
    seed_d_z: float = math.nan
    wilcoxon_p: float = math.nan

    @property
    def primary(self) -> bool:
        """Whether this is the declared primary endpoint."""
        return self.role == "primary"


@dataclass(frozen=True)
class GroupCost:
    """Mean wall times of a group's runs (seconds)."""

    group: str
    n_runs: int
    run_wall_s: float
    train_wall_s: float
    steps: float

    @property
    def seconds_per_step(self) -> float:
        """Training wall time per optimizer step (NaN without training)."""
        return self.train_wall_s / self.steps if self.steps > 0 else math.nan


@dataclass
class ReportInputs:
    """Where the report's numbers come from."""

    experiment: str
    tracking_uri: str
    launch_id: str | None
    baseline: str
    candidate: str
    compare_dir: Path
    all_groups_dir: Path | None = None
    launch: Mapping[str, Any] = field(default_factory=dict)
    lambda_summary: Path | None = None
    #: Paths under this folder (the checkout) are written relative to it, so the committed
    #: report reads the same on every machine.
    root: Path | None = None


def portable(text: str, root: Path | None) -> str:
    """``text`` with absolute paths under ``root`` made relative to it (sqlite URIs too)."""
    if root is None:
        return text
    prefix = str(Path(root).resolve()).rstrip("/") + "/"
    return text.replace(f"sqlite:///{prefix}", "sqlite:///").replace(prefix, "")


def _float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan


def read_summary(path: Path) -> dict[tuple[str, str], SummaryCell]:
    """compare's ``summary.csv`` keyed by ``(group, metric)``."""
    out: dict[tuple[str, str], SummaryCell] = {}
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            cell = SummaryCell(
                group=row["group"], metric=row["metric"],
                higher_is_better=row["higher_is_better"] == "True",
                n_runs=int(row["n_runs"]), mean=_float(row["mean"]), low=_float(row["ci_low"]),
                high=_float(row["ci_high"]), n_prompts=int(row.get("n_prompts") or 0),
            )
            out[(cell.group, cell.metric)] = cell
    return out


def read_tests(path: Path) -> list[TestCell]:
    """compare's ``tests.csv``."""
    out = []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out.append(TestCell(
                group=row["group"], metric=row["metric"], role=row["role"],
                method=row["method"], n_seeds=int(row["n_seeds"] or 0),
                n_prompts=int(row["n_prompts"] or 0), delta=_float(row["delta"]),
                low=_float(row["ci_low"]), high=_float(row["ci_high"]), p=_float(row["p"]),
                p_holm=_float(row["p_holm"]), mde=_float(row["mde"]), verdict=row["verdict"],
                reason=row.get("reason") or "", seed_p=_float(row.get("seed_p")),
                seed_d_z=_float(row.get("seed_d_z")), wilcoxon_p=_float(row.get("wilcoxon_p")),
            ))
    return out


def primary_tests(tests: Sequence[TestCell], group: str) -> dict[str, TestCell]:
    """``group``'s effect row per metric (role, Δ with CI, verdict)."""
    return {t.metric: t for t in tests if t.group == group}


def _runs_of_launch(inputs: ReportInputs) -> list[mlruns.RunInfo]:
    client = mlruns.get_client(inputs.tracking_uri)
    where = f"tags.`polylora.launch` = '{inputs.launch_id}'" if inputs.launch_id else None
    return mlruns.select_runs(client, inputs.experiment, where)


def group_costs(runs: Sequence[mlruns.RunInfo]) -> dict[str, GroupCost]:
    """Mean ``run/wall_time_s``, ``train/wall_time_s`` and ``train/steps`` per group."""
    by_group: dict[str, list[mlruns.RunInfo]] = {}
    for r in runs:
        by_group.setdefault(r.tags.get(mlruns.GROUP_TAG, "?"), []).append(r)

    def mean(values: list[float]) -> float:
        finite = [v for v in values if math.isfinite(v)]
        return sum(finite) / len(finite) if finite else math.nan

    return {
        g: GroupCost(
            group=g, n_runs=len(rs),
            run_wall_s=mean([r.metrics.get("run/wall_time_s", math.nan) for r in rs]),
            train_wall_s=mean([r.metrics.get("train/wall_time_s", math.nan) for r in rs]),
            steps=mean([r.metrics.get("train/steps", math.nan) for r in rs]),
        )
        for g, rs in sorted(by_group.items())
    }


# --------------------------------------------------------------------------- formatting


def _n(x: float, digits: int = 3) -> str:
    if x is None or not math.isfinite(x):
        return "–" if x is None or math.isnan(x) else ("∞" if x > 0 else "−∞")
    return f"{x:.{digits}f}"


def _p(x: float) -> str:
    if x is None or math.isnan(x):
        return "–"
    return f"{x:.2e}" if x < 1e-4 else f"{x:.4f}"


def _signed(x: float, digits: int = 2) -> str:
    if x is None or math.isnan(x):
        return "–"
    if math.isinf(x):
        return "+∞" if x > 0 else "−∞"
    return f"{x:+.{digits}f}"


def _duration(seconds: float) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "–"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _cell(s: SummaryCell | None) -> str:
    if s is None or s.n_runs == 0:
        return "–"
    return f"{_n(s.mean)} [{_n(s.low)}, {_n(s.high)}]"


# --------------------------------------------------------------------------- outcome


def _effect_phrase(t: TestCell) -> str:
    ci = f"Δ = {_signed(t.delta, 3)} [{_signed(t.low, 3)}, {_signed(t.high, 3)}]"
    extra = f"p = {_p(t.p)}" + (f", Holm p = {_p(t.p_holm)}" if math.isfinite(t.p_holm) else "")
    design = f"{t.n_seeds} seeds × {t.n_prompts} prompts" if t.n_prompts else f"{t.n_seeds} seeds"
    return f"{ci}; {t.method}, {design}; {extra}"


def _sentence(metric: str, t: TestCell | None, base: SummaryCell | None,
              cand: SummaryCell | None, baseline: str, candidate: str) -> str:
    """One sentence on ``metric``: the means, Δ with its CI, and the verdict of its role."""
    means = ""
    if base is not None and cand is not None:
        lower = "" if base.higher_is_better else ", lower is better"
        means = f"{baseline} {_n(base.mean)} vs {candidate} {_n(cand.mean)}{lower}; "
    if t is None or not math.isfinite(t.delta):
        return f"{metric}: no estimate available ({means.rstrip('; ') or 'no values'})."
    role = {"primary": "primary endpoint", "non-inferiority": "non-inferiority",
            "secondary": "secondary", "excluded": f"excluded: {t.reason}"}.get(t.role, t.role)
    return f"{metric} ({role}): {means}{_effect_phrase(t)}: **{t.verdict or '–'}**."


def outcome(
    summary: Mapping[tuple[str, str], SummaryCell],
    tests: Sequence[TestCell],
    baseline: str,
    candidate: str,
    costs: Mapping[str, GroupCost] | None = None,
    lambda_best: str | None = None,
) -> list[str]:
    """Paragraphs stating the result as what it is, generated from compare's effects only:
    the declared primary endpoint decides; non-inferiority speaks for quality."""
    rows = primary_tests(tests, candidate)

    def s(group: str, metric: str) -> SummaryCell | None:
        return summary.get((group, metric))

    def bullets(metrics: Sequence[str]) -> list[str]:
        return ["- " + _sentence(m, rows.get(m), s(baseline, m), s(candidate, m), baseline,
                                 candidate)
                for m in metrics if s(baseline, m) is not None or m in rows]

    paras: list[str] = []
    prim = next((t for t in rows.values() if t.role == "primary"), None)
    if prim is None:
        answer = (f"**Answer: undetermined.** No primary endpoint was declared for {candidate} "
                  f"against {baseline} (compare.primary), so no test is confirmatory.")
    else:
        stat = _effect_phrase(prim)
        mde = (f" This design can detect |Δ| ≥ {_n(prim.mde)} {prim.metric} (80% power, "
               "α = 0.05)" if math.isfinite(prim.mde) else "")
        if prim.verdict == "confirmed":
            answer = (f"**Answer: yes, on this task and budget.** {candidate} changed "
                      f"{prim.metric} in the declared direction ({stat}).")
        elif prim.verdict == "opposite direction":
            answer = (f"**Answer: no.** {prim.metric} moved against the declared direction "
                      f"with {candidate} ({stat}).")
        else:
            answer = (f"**Answer: not shown on this task and budget.** The primary endpoint "
                      f"{prim.metric}: {stat}; the interval includes 0.{mde}: a smaller effect "
                      "may exist (absence of evidence is not evidence of absence).")
    paras.append("\n".join([answer, "", "**pass@k**:", "", *bullets(PASSK_METRICS)]))
    quality = bullets([m for m in QUALITY_METRICS])
    if quality:
        paras.append("\n".join(["**Single-generation quality** (non-inferiority at the "
                                 "declared margins: the lower CI bound must stay above "
                                 "−margin):", "", *quality]))
    diversity = bullets(DIVERSITY_METRICS)
    if diversity:
        paras.append("\n".join(["**Diversity** (secondaries: tested only if the primary is "
                                 "confirmed):", "", *diversity]))

    notes: list[str] = [
        f"The old criterion (p < {stats.MIN_PVALUE} and Cohen's d > {stats.MIN_EFFECT_SIZE})"
        " is not applied: a d on prompt means measures the spread between prompts, not the "
        "effect; the verdict is the declared primary endpoint's confidence interval."]
    ce_p1, ce_p10 = s(baseline, "pass@1"), s(baseline, "pass@10")
    lo, hi = MID_RANGE

    def inside(cell: SummaryCell | None) -> bool:
        return cell is not None and lo <= cell.mean <= hi

    if ce_p1 is not None:
        text = (f"{baseline}'s pass@1 is {_n(ce_p1.mean)}, "
                f"{'inside' if inside(ce_p1) else 'outside'} the {lo}–{hi} range in which "
                "DESIGN.md expects the task to show a pass@k difference between objectives")
        if ce_p10 is not None and not inside(ce_p1):
            text += (f"; its pass@10 is {_n(ce_p10.mean)}, "
                     + ("inside that range, so pass@10 has room to move either way"
                        if inside(ce_p10) else "also outside it: a null result here says "
                        "little about the method"))
        notes.append(text + ".")
    refs = []
    for ref in (ZERO_SHOT, FEW_SHOT):
        cell = s(ref, "pass@1")
        if cell is not None:
            refs.append(f"{ref.replace('_', '-')} {_n(cell.mean)}")
    if refs and ce_p1 is not None:
        notes.append(f"For reference (means only, untested here): pass@1 of the base model "
                     f"was {' and '.join(refs)}, against {_n(ce_p1.mean)} after CE fine-tuning.")
    n_seeds = max((c.n_runs for (g, _), c in summary.items() if g == baseline), default=0)
    if 0 < n_seeds < 5:
        notes.append(f"With {n_seeds} seeds per arm the seed-to-seed variance is estimated "
                     f"from {n_seeds - 1} degree(s) of freedom: intervals are wide by "
                     "construction (`polylora plan` sizes a design for a target effect).")
    if costs and baseline in costs and candidate in costs:
        b, c = costs[baseline], costs[candidate]
        if math.isfinite(b.train_wall_s) and b.train_wall_s > 0:
            notes.append(
                f"Cost: {candidate} trained in {_duration(c.train_wall_s)} per run against "
                f"{_duration(b.train_wall_s)} for {baseline} "
                f"({c.train_wall_s / b.train_wall_s:.2f}× the training wall time)."
            )
    if prim is None or prim.verdict != "confirmed":
        notes.append(lambda_best or "The λ sweep was not run for this report "
                     "(`python launchers/headline.py --lambda-sweep`).")
    paras.append(" ".join(notes))
    return paras


# --------------------------------------------------------------------------- sections


def run_configs(tracking_uri: str, runs: Sequence[mlruns.RunInfo]) -> dict[str, dict[str, str]]:
    """Each run's resolved ``config.yaml`` artifact, flattened (``eval.max_new_tokens`` ...).

    Read from the artifact rather than the params: MLflow params drop keys that look like
    credentials, which catches ``*_tokens``. A run without the artifact falls back to params.
    """
    import tempfile

    from omegaconf import OmegaConf

    from polylora.tracking import flatten

    client = mlruns.get_client(tracking_uri)
    out: dict[str, dict[str, str]] = {}
    with tempfile.TemporaryDirectory(prefix="polylora-headline-") as tmp:
        for r in runs:
            flat: dict[str, str] = dict(r.params)
            try:
                local = client.download_artifacts(r.run_id, "config.yaml", tmp)
                loaded = OmegaConf.to_container(OmegaConf.load(local))
                flat.update({k: "" if v is None else str(v) for k, v in flatten(loaded).items()})
            except Exception:  # no readable artifact: the params are what there is
                pass
            out[r.run_id] = flat
    return out


def _param(runs: Sequence[mlruns.RunInfo], group: str, key: str,
           configs: Mapping[str, Mapping[str, str]] | None = None) -> str:
    values = sorted({(configs or {}).get(r.run_id, r.params).get(key, "") for r in runs
                     if r.tags.get(mlruns.GROUP_TAG) == group} - {""})
    return ", ".join(values) if values else "–"


def _metric_values(runs: Sequence[mlruns.RunInfo], group: str, key: str) -> list[float]:
    return [r.metrics[key] for r in runs
            if r.tags.get(mlruns.GROUP_TAG) == group and key in r.metrics]


def _setup(inputs: ReportInputs, runs: Sequence[mlruns.RunInfo]) -> list[str]:
    b, c = inputs.baseline, inputs.candidate
    configs = run_configs(inputs.tracking_uri, runs)
    p = lambda key, g=b: _param(runs, g, key, configs)  # noqa: E731
    seeds = sorted({r.seed or "" for r in runs if r.tags.get(mlruns.GROUP_TAG) in (b, c)} - {""},
                   key=lambda v: (len(v), v))
    steps = _metric_values(runs, b, "train/steps") + _metric_values(runs, c, "train/steps")
    hosts = sorted({r.tags.get("polylora.host", "") for r in runs} - {""})
    data_sizes = ", ".join(
        f"{name} {int(vals[0])}" for name in ("train", "val", "test")
        if (vals := _metric_values(runs, b, f"data/{name}"))
    )
    trainable = _metric_values(runs, b, "model/trainable_params")
    total = _metric_values(runs, b, "model/total_params")
    launch = inputs.launch or {}
    lines = [
        _row(["", ""]), _row(["---", "---"]),
        _row(["model", f"{p('model.name')} (source {p('model.source')}"
              + (f", {int(trainable[0]):,} trainable of {int(total[0]):,} parameters"
                 if trainable and total else "") + ")"]),
        _row(["LoRA", f"rank {p('lora.rank')}, α {p('lora.alpha')}, dropout "
                      f"{p('lora.dropout')}, targets {p('lora.target_modules')}"]),
        _row(["data", f"{p('data.name')} (builtin verifiable task, "
                      f"{p('data.source.n_examples')} examples, split seed "
                      f"{p('data.split.seed')}: {data_sizes or '–'}; constraints "
                      f"{p('data.source.kinds')}, targets with Zipf ≥ "
                      f"{p('data.source.min_zipf')}, ≥ {p('data.source.min_answers')} correct "
                      f"answers per prompt; system prompt \"{p('data.system_prompt')}\")"]),
        _row(["training", f"max_steps {p('train.max_steps')}, epochs {p('train.epochs')}, "
                          f"batch {p('train.batch_size')} × accumulation "
                          f"{p('train.grad_accum')}, lr {p('train.learning_rate')} "
                          f"({p('train.lr_scheduler')}), eval every "
                          f"{p('train.eval_every')} steps, early stopping patience "
                          f"{p('train.early_stopping_patience')}, evaluated checkpoint: "
                          + (p('train.checkpoint') if p('train.checkpoint') != "–" else
                             "best validation loss (runs before train.checkpoint existed)")]),
        _row(["steps trained", ", ".join(f"{int(x)}" for x in steps) or "–"]),
        _row(["objectives", f"{b}: {p('objective._target_')}; {c}: "
                            f"{p('objective._target_', c)} with λ "
                            f"{p('objective.diversity_weight', c)}, N "
                            f"{p('objective.n_generations', c)}, diversity "
                            f"{p('objective.diversity_metric', c)}, quality "
                            f"{p('objective.quality', c)}, {p('objective.max_new_tokens', c)} "
                            "new tokens"]),
        _row(["evaluation", f"fixed subset of {p('eval.subset_size')} test prompts (by id), "
                            f"{p('eval.n_samples')} samples each at T = "
                            f"{p('eval.temperature')}, top-p {p('eval.top_p')}, "
                            f"{p('eval.max_new_tokens')} new tokens, plus one greedy answer "
                            "(accuracy); pass@k by the unbiased estimator"]),
        _row(["baselines", f"{ZERO_SHOT}, {FEW_SHOT} ({p('data.few_shot', FEW_SHOT)} "
                           "demonstrations): the same model, data and evaluation, no adapter, "
                           "no training"]),
        _row(["seeds", ", ".join(seeds) or "–"]),
        _row(["hardware", "; ".join(hosts) or "–"]),
        _row(["launch", f"`{inputs.launch_id or '–'}`, {launch.get('started', '–')} → "
                        f"{launch.get('finished', '–')}"]),
    ]
    phases = launch.get("phases") or {}
    if phases:
        total_s = sum(float(v) for v in phases.values())
        lines.append(_row(["wall time (measured)", ", ".join(
            f"{k} {_duration(float(v))}" for k, v in phases.items())
            + f"; total {_duration(total_s)}"]))
    return lines


def _results(summary: Mapping[tuple[str, str], SummaryCell], groups: Sequence[str]) -> list[str]:
    metrics = [m for m in TABLE_METRICS if any((g, m) in summary for g in groups)]
    arrows = {m: "↑" if next(s for (g, mm), s in summary.items() if mm == m).higher_is_better
              else "↓" for m in metrics}
    head = ["group", "n"] + [f"{m} {arrows[m]}" for m in metrics]
    lines = [_row(head), _row(["---"] * len(head))]
    for g in groups:
        cells = [summary.get((g, m)) for m in metrics]
        n = max((c.n_runs for c in cells if c is not None), default=0)
        if n == 0:
            continue
        lines.append(_row([g, str(n)] + [_cell(c) for c in cells]))
    return lines


def _tests_table(tests: Sequence[TestCell], candidate: str) -> list[str]:
    head = ["metric", "role", "Δ (cand − CE) [95% CI]", "method", "p", "p Holm",
            "MDE (80%)", "verdict", "paired t over seeds: p, d_z", "Wilcoxon (prompts): p"]
    lines = [_row(head), _row(["---"] * len(head))]
    order = {m: i for i, m in enumerate(TABLE_METRICS)}
    roles = {"primary": 0, "non-inferiority": 1, "secondary": 2, "excluded": 3}
    rows = sorted((t for t in tests if t.group == candidate),
                  key=lambda t: (roles.get(t.role, 9), order.get(t.metric, 99), t.metric))
    for t in rows:
        lines.append(_row([
            t.metric, t.role + (f" ({t.reason})" if t.reason else ""),
            f"{_signed(t.delta, 3)} [{_signed(t.low, 3)}, {_signed(t.high, 3)}]", t.method,
            _p(t.p), _p(t.p_holm), f"±{_n(t.mde)}" if math.isfinite(t.mde) else "–",
            f"**{t.verdict}**" if t.verdict else "–",
            f"{_p(t.seed_p)}, {_signed(t.seed_d_z)}" if math.isfinite(t.seed_p) else "–",
            _p(t.wilcoxon_p),
        ]))
    return lines


def _cost(costs: Mapping[str, GroupCost], baseline: str, candidate: str) -> list[str]:
    head = ["group", "runs", "mean run wall time", "mean training wall time", "steps",
            "s / step"]
    lines = [_row(head), _row(["---"] * len(head))]
    for g, c in costs.items():
        lines.append(_row([g, str(c.n_runs), _duration(c.run_wall_s), _duration(c.train_wall_s),
                           _n(c.steps, 1), _n(c.seconds_per_step, 2)]))
    if baseline in costs and candidate in costs:
        b, c = costs[baseline], costs[candidate]
        ratio_train = c.train_wall_s / b.train_wall_s if b.train_wall_s > 0 else math.nan
        ratio_run = c.run_wall_s / b.run_wall_s if b.run_wall_s > 0 else math.nan
        ratio_step = (c.seconds_per_step / b.seconds_per_step
                      if b.seconds_per_step > 0 else math.nan)
        lines += ["", f"**{candidate} / {baseline}:** {_n(ratio_train, 2)}× the training wall "
                      f"time, {_n(ratio_step, 2)}× per optimizer step, {_n(ratio_run, 2)}× the "
                      "whole run (training + evaluation). The plan budgeted 3× (12 h vs 4 h). "
                      "Wall times are each run's `train/wall_time_s` and `run/wall_time_s`, "
                      "measured on the launch's machine (other load on it inflates them)."]
    return lines


def _lambda(path: Path | None, baseline_p10: SummaryCell | None) -> tuple[list[str], str | None]:
    """The sweep's summary table, and a sentence on its best trial for the outcome."""
    if path is None or not path.exists():
        return (["Not run for this report: `python launchers/headline.py --lambda-sweep` adds a "
                 "small grid over λ (`+hparams_search=lambda`, one seed, its own MLflow "
                 "experiment `<name>-lambda`) and this section."], None)
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return ([f"The sweep's `{path.name}` has no trials."], None)
    columns = [c for c in rows[0] if c != "error" or any(r.get("error") for r in rows)]
    lines = [f"From the sweep's `{path.name}` (one seed per λ; no significance test):", "",
             _row(columns), _row(["---"] * len(columns))]
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c, "")
            x = _float(v)
            cells.append(f"{x:.4g}" if v and math.isfinite(x) and c != "trial" else v)
        lines.append(_row(cells))
    metric_col = next((c for c in columns if "pass" in c and "10" in c), None)
    lam_col = next((c for c in columns if c.endswith("diversity_weight")), None)
    best = None
    if metric_col and lam_col:
        done = [r for r in rows if math.isfinite(_float(r.get(metric_col)))]
        if done:
            top = max(done, key=lambda r: _float(r[metric_col]))
            best = (f"The λ sweep's best trial was λ = {_float(top[lam_col]):g} with "
                    f"{metric_col} = {_n(_float(top[metric_col]))} (one seed, untested"
                    + (f"; the CE arm's mean is {_n(baseline_p10.mean)}" if baseline_p10 else "")
                    + ").")
    return lines, best


def _mlflow_runs(inputs: ReportInputs, runs: Sequence[mlruns.RunInfo],
                 groups: Sequence[str]) -> list[str]:
    head = ["group", "seed", "run id", "pass@1", "pass@10", "accuracy", "run wall time"]
    lines = [f"Experiment `{inputs.experiment}` in `{inputs.tracking_uri}`"
             + (f", runs tagged `polylora.launch = {inputs.launch_id}`" if inputs.launch_id
                else "") + ". Every number above comes from these runs (per-run values below "
             "are their final `eval/*` metrics).", "", _row(head), _row(["---"] * len(head))]
    order = {g: i for i, g in enumerate(groups)}
    ranked = sorted(runs, key=lambda r: (order.get(r.tags.get(mlruns.GROUP_TAG, ""), 99),
                                         int(r.seed) if (r.seed or "").isdigit() else 0))
    for r in ranked:
        m = mlruns.eval_metrics(r)
        lines.append(_row([r.tags.get(mlruns.GROUP_TAG, "?"), r.seed or "", f"`{r.run_id}`",
                           _n(m.get("pass@1", math.nan)), _n(m.get("pass@10", math.nan)),
                           _n(m.get("accuracy", math.nan)),
                           _duration(r.metrics.get("run/wall_time_s", math.nan))]))
    comparisons = (inputs.launch or {}).get("comparison_runs") or {}
    if comparisons:
        lines += ["", "Comparison runs (`polylora.kind=comparison`, the folders' files as "
                      "artifacts): " + "; ".join(f"`{folder}`: `{rid}`"
                                                 for folder, rid in comparisons.items())]
    commit = sorted({r.tags.get("mlflow.source.git.commit", "") for r in runs} - {""})
    if commit:
        lines += ["", f"Code: git commit {', '.join(f'`{c}`' for c in commit)}."]
    return lines


def render(inputs: ReportInputs, out_path: Path) -> str:
    """The report's Markdown (plots linked relative to ``out_path``'s folder)."""
    summary_all = {}
    if inputs.all_groups_dir is not None and (inputs.all_groups_dir / "summary.csv").exists():
        summary_all = read_summary(inputs.all_groups_dir / "summary.csv")
    summary = read_summary(inputs.compare_dir / "summary.csv")
    tests = read_tests(inputs.compare_dir / "tests.csv")
    table_summary = {**summary_all, **summary}  # the arms' cells are the same either way
    runs = _runs_of_launch(inputs)
    costs = group_costs(runs)
    groups = [g for g in (ZERO_SHOT, FEW_SHOT, inputs.baseline, inputs.candidate)
              if any(k[0] == g for k in table_summary)]
    lam_lines, lam_best = _lambda(inputs.lambda_summary,
                                  summary.get((inputs.baseline, "pass@10")))
    launch = inputs.launch or {}
    rel = Path(os.path.relpath(inputs.compare_dir, out_path.parent))
    all_rel = (Path(os.path.relpath(inputs.all_groups_dir, out_path.parent))
               if inputs.all_groups_dir is not None else None)

    out = [
        f"# Headline: does polychromic training beat CE at pass@k? ({inputs.experiment})", "",
        f"Generated by `{launch.get('command') or 'polylora.report.headline'}` on "
        f"{datetime.now().isoformat(timespec='seconds')} from the MLflow runs listed at the "
        "end; do not edit by hand (docs/results/README.md says how to regenerate it).", "",
        "## Research question", "",
        f"*{RESEARCH_QUESTION}* Here: polychromic LoRA ({inputs.candidate}) against "
        f"cross-entropy LoRA ({inputs.baseline}), identical except for the objective, with "
        "the untrained model's zero-shot and few-shot answers as reference rows.", "",
        "## Outcome", "",
        *[para + "\n" for para in outcome(summary, tests, inputs.baseline, inputs.candidate,
                                          costs, lam_best)],
        "## Setup", "", *_setup(inputs, runs), "",
        "## Results", "",
        "Mean over seeds with a 95% t-interval over seeds (compare's `summary.csv`; with 3 "
        "seeds it is ±4.30 standard errors wide); ↑ higher is better, ↓ lower is better. "
        "pass@k: unbiased estimator over the fixed evaluation prompts; accuracy: the greedy "
        "answer; sample_accuracy: "
        "the mean over samples. Self-BLEU: BLEU-4 of each sample against the prompt's other "
        "samples; distinct-n pooled over a prompt's samples (whitespace tokens, so distinct-2 "
        "is 0 for one-word answers: distinct-1 is the informative lexical diversity here); "
        "semantic diversity: mean pairwise cosine distance of MiniLM embeddings.", "",
        *_results(table_summary, groups), "",
        "## Significance tests", "",
        f"{inputs.candidate} against {inputs.baseline} (compare run on these two groups only)."
        " Δ is candidate − baseline in the metric's own units with its 95% CI, from the "
        "crossed seeds × prompts model (seeds and prompts both random) where per-prompt scores"
        " of shared seeds exist. The primary endpoint was declared in the config before the "
        "runs (`compare.primary`); quality metrics are tested for non-inferiority at "
        "`compare.noninferiority`; secondaries form one Holm family, tested only if the "
        "primary is confirmed; duplicates and degenerate metrics are excluded (reason "
        "given). The last two columns are sensitivity analyses (d_z: the paired seed test's "
        "standardized effect; the Wilcoxon treats seeds as fixed).", "",
        *_tests_table(tests, inputs.candidate), "",
        "## Cost", "", *_cost(costs, inputs.baseline, inputs.candidate), "",
        "## Plots", "",
    ]
    plot_dir = all_rel if all_rel is not None and inputs.all_groups_dir is not None else rel
    plot_src = inputs.all_groups_dir if inputs.all_groups_dir is not None else inputs.compare_dir
    for title, name in (("pass@k per group (95% CI over seeds)", "passk.png"),
                        ("quality vs diversity, one point per run", "quality_diversity.png"),
                        ("train and eval loss", "loss_curves.png")):
        if (plot_src / name).exists():
            out.append(f"![{title}]({(plot_dir / name).as_posix()})")
        elif (inputs.compare_dir / name).exists():
            out.append(f"![{title}]({(rel / name).as_posix()})")
        else:
            out.append(f"- {title}: not drawn (nothing to plot)")
    out += ["", f"compare's own reports: [{(rel / 'report.md').as_posix()}]"
                f"({(rel / 'report.md').as_posix()})"
            + (f", [{(all_rel / 'report.md').as_posix()}]({(all_rel / 'report.md').as_posix()})"
               if all_rel is not None else "") + ".", ""]
    out += ["## λ sweep", "", *lam_lines, ""]
    out += ["## MLflow runs", "", *_mlflow_runs(inputs, runs, groups), ""]
    out += ["## Reproduce", "", "```bash",
            "python launchers/headline.py            # both arms × seeds 42,123,456, "
            "baselines, compare, this file",
            "python launchers/headline.py --lambda-sweep   # + the λ grid",
            "python launchers/headline.py --smoke    # the same recipe on the tiny model",
            "```", ""]
    if launch.get("command"):
        out += [f"This report: `{launch['command']}`"
                + (f" with Hydra overrides `{' '.join(launch['extra_overrides'])}`"
                   if launch.get("extra_overrides") else "") + ".", ""]
    if launch.get("commands"):
        out += ["The commands it ran, from the repository root:", ""]
    for phase, cmd in (launch.get("commands") or {}).items():
        out.append(f"- {phase}: `{cmd}`")
    out.append("")
    return portable("\n".join(out), inputs.root)


def write_report(path: Path, inputs: ReportInputs) -> Path:
    """Render the report into ``path`` (parent folders created); returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(inputs, path), encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m polylora.report.headline``: regenerate the report from a compare folder."""
    p = argparse.ArgumentParser(prog="python -m polylora.report.headline",
                                description=__doc__.splitlines()[0])
    p.add_argument("--experiment", default="headline", help="MLflow experiment")
    p.add_argument("--tracking-uri", default=None, help="MLflow store")
    p.add_argument("--launch-id", default=None, help="value of the polylora.launch tag")
    p.add_argument("--baseline", default="headline_ce")
    p.add_argument("--candidate", default="headline_polychromic")
    p.add_argument("--compare-dir", default="docs/results/headline_files")
    p.add_argument("--launch-file", default=None, help="launch.json written by the launcher")
    p.add_argument("--lambda-summary", default=None, help="the λ sweep's summary.csv")
    p.add_argument("--out", default="docs/results/headline.md")
    args = p.parse_args(argv)
    compare_dir = Path(args.compare_dir)
    launch = (json.loads(Path(args.launch_file).read_text(encoding="utf-8"))
              if args.launch_file else {})
    all_groups = compare_dir / "all_groups"
    try:
        path = write_report(Path(args.out), ReportInputs(
            experiment=args.experiment,
            tracking_uri=mlruns.resolve_tracking_uri(args.tracking_uri),
            launch_id=args.launch_id, baseline=args.baseline, candidate=args.candidate,
            compare_dir=compare_dir, all_groups_dir=all_groups if all_groups.exists() else None,
            launch=launch,
            lambda_summary=Path(args.lambda_summary) if args.lambda_summary else None,
            root=Path.cwd(),
        ))
    except (PolyloraError, OSError, KeyError) as exc:
        print(f"polylora: error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
