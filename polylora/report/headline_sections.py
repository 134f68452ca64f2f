"""The headline report's tables: setup, results, significance tests, cost, the λ sweep and
the MLflow runs, each as Markdown lines."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from polylora.record import names
from polylora.record import reader as mlruns
from polylora.record.names import LAUNCH_TAG
from polylora.render import markdown
from polylora.render.markdown import pval, signed
from polylora.report.headline_format import ci_cell, duration, num
from polylora.report.headline_inputs import (
    FEW_SHOT,
    TABLE_METRICS,
    ZERO_SHOT,
    GroupCost,
    ReportInputs,
    SummaryCell,
    TestCell,
    to_float,
)

__all__ = [
    "cost_table",
    "lambda_section",
    "mlflow_runs_section",
    "results_table",
    "run_configs",
    "setup_table",
    "tests_table",
]


def _header(cells: Sequence[str]) -> list[str]:
    """A table's header row and its ``| --- |`` separator."""
    return [markdown.row(cells), markdown.row(["---"] * len(cells))]


def run_configs(tracking_uri: str, runs: Sequence[mlruns.RunInfo]) -> dict[str, dict[str, str]]:
    """Each run's resolved ``config.yaml`` artifact, flattened (``eval.max_new_tokens`` ...).

    Read from the artifact rather than the params: MLflow params drop keys that look like
    credentials, which catches ``*_tokens``. A run without the artifact falls back to params.
    """
    import tempfile

    from omegaconf import OmegaConf

    from polylora.record.tracking import flatten

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


def setup_table(inputs: ReportInputs, runs: Sequence[mlruns.RunInfo]) -> list[str]:
    """The Setup table: model, LoRA, data, training, objectives, evaluation, seeds, launch."""
    b, c = inputs.baseline, inputs.candidate
    row = markdown.row
    configs = run_configs(inputs.tracking_uri, runs)
    p = lambda key, g=b: _param(runs, g, key, configs)  # noqa: E731
    seeds = sorted({r.seed or "" for r in runs if r.tags.get(mlruns.GROUP_TAG) in (b, c)} - {""},
                   key=lambda v: (len(v), v))
    steps = _metric_values(runs, b, names.TRAIN_STEPS) + _metric_values(runs, c, names.TRAIN_STEPS)
    hosts = sorted({r.tags.get(names.HOST_TAG, "") for r in runs} - {""})
    data_sizes = ", ".join(
        f"{name} {int(vals[0])}" for name in ("train", "val", "test")
        if (vals := _metric_values(runs, b, names.data_size_metric(name)))
    )
    trainable = _metric_values(runs, b, names.TRAINABLE_PARAMS)
    total = _metric_values(runs, b, names.TOTAL_PARAMS)
    launch = inputs.launch or {}
    lam = p('objective.pg_weight', c)
    lam = lam if lam != "–" else p('objective.diversity_weight', c)  # runs before one name
    lines = [
        row(["", ""]), row(["---", "---"]),
        row(["model", f"{p('model.name')} (source {p('model.source')}"
              + (f", {int(trainable[0]):,} trainable of {int(total[0]):,} parameters"
                 if trainable and total else "") + ")"]),
        row(["LoRA", f"rank {p('lora.rank')}, α {p('lora.alpha')}, dropout "
                      f"{p('lora.dropout')}, targets {p('lora.target_modules')}"]),
        row(["data", f"{p('data.name')} (builtin verifiable task, "
                      f"{p('data.source.n_examples')} examples, split seed "
                      f"{p('data.split.seed')}: {data_sizes or '–'}; constraints "
                      f"{p('data.source.kinds')}, targets with Zipf ≥ "
                      f"{p('data.source.min_zipf')}, ≥ {p('data.source.min_answers')} correct "
                      f"answers per prompt; system prompt \"{p('data.system_prompt')}\")"]),
        row(["training", f"max_steps {p('train.max_steps')}, epochs {p('train.epochs')}, "
                          f"batch {p('train.batch_size')} × accumulation "
                          f"{p('train.grad_accum')}, lr {p('train.learning_rate')} "
                          f"({p('train.lr_scheduler')}), eval every "
                          f"{p('train.eval_every')} steps, early stopping patience "
                          f"{p('train.early_stopping_patience')}, evaluated checkpoint: "
                          + (p('train.checkpoint') if p('train.checkpoint') != "–" else
                             "best validation loss (runs before train.checkpoint existed)")]),
        row(["steps trained", ", ".join(f"{int(x)}" for x in steps) or "–"]),
        row(["objectives", f"{b}: {p('objective._target_')}; {c}: "
                            f"{p('objective._target_', c)} with λ "
                            f"{lam}, N "
                            f"{p('objective.n_generations', c)}, diversity "
                            f"{p('objective.diversity_metric', c)}, quality "
                            f"{p('objective.quality', c)}, {p('objective.max_new_tokens', c)} "
                            "new tokens"]),
        row(["evaluation", f"fixed subset of {p('eval.subset_size')} test prompts (by id), "
                            f"{p('eval.n_samples')} samples each at T = "
                            f"{p('eval.temperature')}, top-p {p('eval.top_p')}, "
                            f"{p('eval.max_new_tokens')} new tokens, plus one greedy answer "
                            "(accuracy); pass@k by the unbiased estimator"]),
        row(["baselines", f"{ZERO_SHOT}, {FEW_SHOT} ({p('data.few_shot', FEW_SHOT)} "
                           "demonstrations): the same model, data and evaluation, no adapter, "
                           "no training"]),
        row(["seeds", ", ".join(seeds) or "–"]),
        row(["hardware", "; ".join(hosts) or "–"]),
        row(["launch", f"`{inputs.launch_id or '–'}`, {launch.get('started', '–')} → "
                        f"{launch.get('finished', '–')}"]),
    ]
    phases = launch.get("phases") or {}
    if phases:
        total_s = sum(float(v) for v in phases.values())
        lines.append(row(["wall time (measured)", ", ".join(
            f"{k} {duration(float(v))}" for k, v in phases.items())
            + f"; total {duration(total_s)}"]))
    return lines


def results_table(
    summary: Mapping[tuple[str, str], SummaryCell], groups: Sequence[str]
) -> list[str]:
    """Mean [95% CI] of every table metric per group (groups without runs left out)."""
    metrics = [m for m in TABLE_METRICS if any((g, m) in summary for g in groups)]
    arrows = {m: "↑" if next(s for (g, mm), s in summary.items() if mm == m).higher_is_better
              else "↓" for m in metrics}
    head = ["group", "n"] + [f"{m} {arrows[m]}" for m in metrics]
    lines = [*_header(head)]
    for g in groups:
        cells = [summary.get((g, m)) for m in metrics]
        n = max((c.n_runs for c in cells if c is not None), default=0)
        if n == 0:
            continue
        lines.append(markdown.row([g, str(n)] + [ci_cell(c) for c in cells]))
    return lines


def tests_table(tests: Sequence[TestCell], candidate: str) -> list[str]:
    """The candidate's effect per metric: role, Δ with CI, tests, MDE, verdict."""
    head = ["metric", "role", "Δ (cand − CE) [95% CI]", "method", "p", "p Holm",
            "MDE (80%)", "verdict", "paired t over seeds: p, d_z", "Wilcoxon (prompts): p"]
    lines = [*_header(head)]
    order = {m: i for i, m in enumerate(TABLE_METRICS)}
    roles = {"primary": 0, "non-inferiority": 1, "secondary": 2, "excluded": 3}
    rows = sorted((t for t in tests if t.group == candidate),
                  key=lambda t: (roles.get(t.role, 9), order.get(t.metric, 99), t.metric))
    for t in rows:
        lines.append(markdown.row([
            t.metric, t.role + (f" ({t.reason})" if t.reason else ""),
            f"{signed(t.delta, 3)} [{signed(t.low, 3)}, {signed(t.high, 3)}]", t.method,
            pval(t.p), pval(t.p_holm), f"±{num(t.mde)}" if math.isfinite(t.mde) else "–",
            f"**{t.verdict}**" if t.verdict else "–",
            f"{pval(t.seed_p)}, {signed(t.seed_d_z, 2)}" if math.isfinite(t.seed_p) else "–",
            pval(t.wilcoxon_p),
        ]))
    return lines


def cost_table(costs: Mapping[str, GroupCost], baseline: str, candidate: str) -> list[str]:
    """Mean wall times per group and the candidate / baseline ratios."""
    head = ["group", "runs", "mean run wall time", "mean training wall time", "steps",
            "s / step"]
    lines = [*_header(head)]
    for g, c in costs.items():
        lines.append(markdown.row([g, str(c.n_runs), duration(c.run_wall_s),
                                   duration(c.train_wall_s), num(c.steps, 1),
                                   num(c.seconds_per_step, 2)]))
    if baseline in costs and candidate in costs:
        b, c = costs[baseline], costs[candidate]
        ratio_train = c.train_wall_s / b.train_wall_s if b.train_wall_s > 0 else math.nan
        ratio_run = c.run_wall_s / b.run_wall_s if b.run_wall_s > 0 else math.nan
        ratio_step = (c.seconds_per_step / b.seconds_per_step
                      if b.seconds_per_step > 0 else math.nan)
        lines += ["", f"**{candidate} / {baseline}:** {num(ratio_train, 2)}× the training wall "
                      f"time, {num(ratio_step, 2)}× per optimizer step, {num(ratio_run, 2)}× the "
                      "whole run (training + evaluation). The plan budgeted 3× (12 h vs 4 h). "
                      "Wall times are each run's `train/wall_time_s` and `run/wall_time_s`, "
                      "measured on the launch's machine (other load on it inflates them)."]
    return lines


def lambda_section(
    path: Path | None, baseline_p10: SummaryCell | None
) -> tuple[list[str], str | None]:
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
             *_header(columns)]
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c, "")
            x = to_float(v)
            cells.append(f"{x:.4g}" if v and math.isfinite(x) and c != "trial" else v)
        lines.append(markdown.row(cells))
    metric_col = next((c for c in columns if "pass" in c and "10" in c), None)
    lam_col = next((c for c in columns if c.endswith(("pg_weight", "diversity_weight"))), None)
    best = None
    if metric_col and lam_col:
        done = [r for r in rows if math.isfinite(to_float(r.get(metric_col)))]
        if done:
            top = max(done, key=lambda r: to_float(r[metric_col]))
            best = (f"The λ sweep's best trial was λ = {to_float(top[lam_col]):g} with "
                    f"{metric_col} = {num(to_float(top[metric_col]))} (one seed, untested"
                    + (f"; the CE arm's mean is {num(baseline_p10.mean)}" if baseline_p10 else "")
                    + ").")
    return lines, best


def mlflow_runs_section(inputs: ReportInputs, runs: Sequence[mlruns.RunInfo],
                        groups: Sequence[str]) -> list[str]:
    """The runs behind every number: per-run values, comparison runs, the git commit."""
    head = ["group", "seed", "run id", "pass@1", "pass@10", "accuracy", "run wall time"]
    lines = [f"Experiment `{inputs.experiment}` in `{inputs.tracking_uri}`"
             + (f", runs tagged `{LAUNCH_TAG} = {inputs.launch_id}`" if inputs.launch_id
                else "") + ". Every number above comes from these runs (per-run values below "
             "are their final `eval/*` metrics).", "", *_header(head)]
    order = {g: i for i, g in enumerate(groups)}
    ranked = sorted(runs, key=lambda r: (order.get(r.tags.get(mlruns.GROUP_TAG, ""), 99),
                                         int(r.seed or "0") if (r.seed or "").isdigit()
                                         else 0))
    for r in ranked:
        m = mlruns.eval_metrics(r)
        lines.append(markdown.row([r.tags.get(mlruns.GROUP_TAG, "?"), r.seed or "", f"`{r.run_id}`",
                           num(m.get("pass@1", math.nan)), num(m.get("pass@10", math.nan)),
                           num(m.get("accuracy", math.nan)),
                           duration(r.metrics.get(names.RUN_WALL_TIME, math.nan))]))
    comparisons = (inputs.launch or {}).get("comparison_runs") or {}
    if comparisons:
        lines += ["", "Comparison runs (`polylora.kind=comparison`, the folders' files as "
                      "artifacts): " + "; ".join(f"`{folder}`: `{rid}`"
                                                 for folder, rid in comparisons.items())]
    commit = sorted({r.tags.get(names.GIT_COMMIT_TAG, "") for r in runs} - {""})
    if commit:
        lines += ["", f"Code: git commit {', '.join(f'`{c}`' for c in commit)}."]
    return lines
