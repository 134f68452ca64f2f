"""``polylora diagnose RUN_ID``: the overfitting decision matrix applied to one MLflow run.

Fetches what :func:`polylora.report.diagnose.diagnose` needs from the run and prints the
numbers it used, then the diagnosis (verdict, findings, the exact next command):

* ``train/loss`` and ``eval/loss`` curves (a final value logged without a step, i.e. at step 0
  after the curve, is left out of it);
* eval perplexity: the last logged ``eval/perplexity``;
* training examples: metric ``data/train`` (:data:`polylora.record.names.TRAIN_SIZE`);
* steps per epoch: from the ``train/epoch`` curve (step / epoch at its last point), else
  ceil(training examples / (``train.batch_size`` × ``train.grad_accum``));
* objective (``polylora.objective`` tag: the objective's config name), λ
  (``objective.pg_weight``; ``objective.diversity_weight`` in older runs), experiment
  (``polylora.experiment`` tag): the commands rerun the run's own experiment;
* the matrix's columns (which experiment runs the standard and the conservative column per
  objective): ``--columns FILE``, default ``conf/diagnose/columns.yaml``; ``--conservative``
  names the conservative experiment for this run directly;
* diversity: ``eval/semantic_diversity``, else 1 − ``eval/self_bleu``, else
  ``eval/distinct_2``; quality: ``--quality-metric`` (default ``eval/accuracy``, falling back
  to pass@1, then rouge_l);
* for a polychromic run, the baseline quality: mean quality of the FINISHED CE runs of the
  same experiment and data (``data.name``), so "poor quality" is judged against it.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from typing import Any

from polylora.errors import ConfigError, PolyloraError
from polylora.record import names
from polylora.record import reader as mlruns
from polylora.record.names import TRAIN_SIZE
from polylora.render import markdown
from polylora.report.diagnose import Columns, Diagnosis, RunCurves, diagnose, load_columns
from polylora.report.diagnose.columns import DEFAULT_COLUMNS_FILE
from polylora.report.diagnose.inputs import OBJECTIVES

__all__ = ["DiagnosisInputs", "add_arguments", "columns_for", "fetch_curves", "render", "run"]

QUALITY_FALLBACK = ("accuracy", "pass@1", "rouge_l")


@dataclass
class DiagnosisInputs:
    """The curves for :func:`diagnose` plus where each number came from (for the printout)."""

    curves: RunCurves
    sources: dict[str, str] = field(default_factory=dict)  # input → "value (source)"


def _metric(info: mlruns.RunInfo, name: str) -> tuple[float, str] | None:
    """Final ``eval/<name>`` (MLflow spelling) of the run, with its key."""
    key = names.eval_metric(name)
    value = info.metrics.get(key)
    if value is None or not math.isfinite(value):
        return None
    return float(value), key


def _float_param(info: mlruns.RunInfo, key: str) -> float | None:
    raw = info.params.get(key)
    if raw in (None, "", "None", "null"):
        return None
    try:
        return float(raw)
    except ValueError:
        return None


def _steps_per_epoch(
    client: Any, info: mlruns.RunInfo, n_train: int | None
) -> tuple[int | None, str]:
    if names.TRAIN_EPOCH in info.metrics:
        epochs = [(s, v) for s, v in mlruns.metric_history(client, info.run_id, names.TRAIN_EPOCH)
                  if s > 0 and v > 0]
        if epochs:
            step, epoch = epochs[-1]
            source = f"{names.TRAIN_EPOCH}: step {step} at epoch {epoch:g}"
            return max(1, round(step / epoch)), source
    batch = _float_param(info, "train.batch_size")
    accum = _float_param(info, "train.grad_accum") or 1.0
    if n_train and batch:
        spe = max(1, math.ceil(n_train / (batch * accum)))
        return spe, f"{n_train} examples / (batch {batch:g} × grad_accum {accum:g})"
    return None, "unknown (no train/epoch curve, no data size and batch size)"


def _baseline_quality(
    client: Any, info: mlruns.RunInfo, quality_key: str
) -> tuple[float | None, str]:
    """Mean quality of the CE runs of the same experiment (and data.name) as ``info``."""
    exp = client.get_experiment(info.experiment_id)
    candidates = mlruns.select_runs(client, exp.name)
    data_name = info.params.get("data.name")
    values = [
        r.metrics[quality_key]
        for r in candidates
        if r.run_id != info.run_id
        and mlruns.objective_kind(r) == "ce"
        and r.params.get("data.name") == data_name
        and quality_key in r.metrics
        and math.isfinite(r.metrics[quality_key])
    ]
    if not values:
        return None, "no FINISHED CE run with the same data in this experiment"
    mean = sum(values) / len(values)
    return mean, f"mean {quality_key} of {len(values)} CE run(s) in experiment {exp.name!r}"


def fetch_curves(
    client: Any, run_id: str, quality_metric: str | None = None
) -> DiagnosisInputs:
    """Read ``run_id`` from MLflow into :class:`RunCurves` (see the module doc for sources)."""
    info = mlruns.get_run(client, run_id)
    src: dict[str, str] = {"run": f"{info.run_id} ({info.name or 'unnamed'}, {info.status})"}
    train = mlruns.metric_history(client, run_id, names.TRAIN_LOSS)
    evals = mlruns.metric_history(client, run_id, names.VAL_LOSS)
    src[names.TRAIN_LOSS] = f"{len(train)} points" + (
        f", steps {train[0][0]}–{train[-1][0]}" if train else "")
    src[names.VAL_LOSS] = f"{len(evals)} points" + (
        f", steps {evals[0][0]}–{evals[-1][0]}" if evals else "")

    ppl = mlruns.final_value(client, run_id, names.VAL_PERPLEXITY)
    src["eval perplexity"] = f"{ppl:.3f} (last logged eval/perplexity)" if ppl is not None \
        else "not logged"

    n_train = mlruns.train_size(info)
    src["training examples"] = (f"{n_train} ({TRAIN_SIZE})" if n_train is not None
                                else f"unknown ({TRAIN_SIZE} not logged)")

    spe, spe_src = _steps_per_epoch(client, info, n_train)
    src["steps per epoch"] = f"{spe} ({spe_src})" if spe else spe_src

    kind = mlruns.objective_kind(info)
    if kind is None:
        kind = "ce"
        src["objective"] = "ce (assumed: the run has no polylora.objective tag)"
    elif kind not in OBJECTIVES:
        raise ConfigError(
            f"run {run_id} uses objective {kind!r}; diagnose knows "
            + " and ".join(repr(o) for o in OBJECTIVES)
        )
    else:
        src["objective"] = kind
    lam_key = next((k for k in ("objective.pg_weight", "objective.diversity_weight")
                    if _float_param(info, k) is not None), "objective.pg_weight")
    lam = _float_param(info, lam_key)
    if lam is not None:
        src["λ"] = f"{lam:g} ({lam_key})"
    experiment = info.tags.get(mlruns.EXPERIMENT_TAG)
    if experiment in (None, "", "default"):
        experiment = None
    src["experiment"] = experiment or "unknown (commands use the standard column's)"

    diversity: float | None = None
    if (hit := _metric(info, "semantic_diversity")) is not None:
        diversity = hit[0]
        src["diversity"] = f"{diversity:.3f} ({hit[1]})"
    elif (hit := _metric(info, "self_bleu")) is not None:
        diversity = 1.0 - hit[0]
        src["diversity"] = f"{diversity:.3f} (derived: 1 − {hit[1]} {hit[0]:.3f})"
    elif (hit := _metric(info, "distinct_2")) is not None:
        diversity = hit[0]
        src["diversity"] = f"{diversity:.3f} ({hit[1]})"
    else:
        src["diversity"] = "not logged (diversity rules skipped)"

    quality: float | None = None
    quality_key: str | None = None
    if quality_metric:
        name = mlruns.canonical_metric(quality_metric)
        hit = _metric(info, name)
        if hit is None:
            logged = sorted(mlruns.eval_metrics(info))
            raise PolyloraError(
                f"run {run_id} has no eval/{name}; logged: {', '.join(logged) or 'none'}"
            )
        quality, quality_key = hit
    else:
        for name in QUALITY_FALLBACK:
            if (hit := _metric(info, name)) is not None:
                quality, quality_key = hit
                break
    src["quality"] = f"{quality:.3f} ({quality_key})" if quality is not None \
        else f"not logged (none of {', '.join(QUALITY_FALLBACK)})"

    baseline_quality: float | None = None
    if kind == "polychromic" and quality_key is not None:
        baseline_quality, why = _baseline_quality(client, info, quality_key)
        src["baseline quality"] = f"{baseline_quality:.3f} ({why})" \
            if baseline_quality is not None else why
    curves = RunCurves(
        train_loss=train,
        eval_loss=evals,
        steps_per_epoch=spe,
        eval_perplexity=ppl,
        n_train_examples=n_train,
        diversity=diversity,
        quality=quality,
        objective=kind,
        diversity_weight=lam,
        experiment=experiment,
        baseline_quality=baseline_quality,
    )
    return DiagnosisInputs(curves=curves, sources=src)


def render(inputs: DiagnosisInputs, result: Diagnosis) -> str:
    """The printout: inputs table, then the diagnosis Markdown."""
    lines = ["# polylora diagnose", "",
             *markdown.table(["input", "value (source)"], inputs.sources.items())]
    return "\n".join(lines) + "\n\n" + result.to_markdown()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``polylora diagnose`` options."""
    parser.add_argument("run_id", help="MLflow run id")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: $MLFLOW_TRACKING_URI or "
                        f"{mlruns.DEFAULT_TRACKING_URI})")
    parser.add_argument("--quality-metric", default=None,
                        help="quality metric (default: eval/accuracy, else pass@1, else rouge_l)")
    parser.add_argument("--columns", default=None,
                        help="YAML naming the experiments of the standard and conservative "
                        "columns per objective (default: polylora/conf/diagnose/columns.yaml)")
    parser.add_argument("--conservative", default=None, metavar="EXPERIMENT",
                        help="the experiment to switch to when this run overfits "
                        "(overrides the columns file for the run's objective)")


def columns_for(inputs: DiagnosisInputs, path: str | None,
                conservative: str | None) -> Columns:
    """The columns file (``path`` or the default) with ``conservative`` for the run's
    objective; records where they came from in ``inputs.sources``."""
    columns = load_columns(path)
    inputs.sources["columns"] = str(path or DEFAULT_COLUMNS_FILE)
    if conservative:
        objective = inputs.curves.objective
        columns = Columns(standard=columns.standard,
                          conservative={**columns.conservative, objective: conservative},
                          default_lambda=columns.default_lambda)
        inputs.sources["columns"] += f"; conservative {conservative} (--conservative)"
    return columns


def run(args: argparse.Namespace) -> int:
    """Fetch the run, diagnose it, print inputs, verdict and the next command."""
    client = mlruns.get_client(args.tracking_uri)
    inputs = fetch_curves(client, args.run_id, args.quality_metric)
    columns = columns_for(inputs, args.columns, args.conservative)
    print(render(inputs, diagnose(inputs.curves, columns=columns)), end="")
    return 0
