"""The one evaluation loop of a run: validation loss, the validation eval subset (when a
search optimizes it), the test evaluation with its generations, plots, sample table and
judge. A trained adapter, a merged adapter and a routed mixture of adapters all go through
:func:`evaluate_adapter`; a routed mixture passes an
:class:`~polylora.evaluate.evaluation.AdapterHook` that activates each prompt's adapters."""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, OmegaConf

from polylora.data.example import Example
from polylora.data.formatting import EncodedDataset, PromptFormat
from polylora.errors import ConfigError, DataError
from polylora.evaluate.evaluation import AdapterHook
from polylora.record import names, writer
from polylora.record.memory import phase_metric
from polylora.train.preparation import Prepared, validation_metrics

log = logging.getLogger(__name__)

#: eval.judge.baseline_run value that judges the run's answers against the data's responses.
REFERENCE_BASELINE = "references"
#: Extra fields for a prompt's ``generations.jsonl`` row, by example id (e.g. its route).
RowFields = Callable[[str], dict[str, Any]]


def evaluate_adapter(
    cfg: DictConfig,
    prep: Prepared,
    model: Any,
    tok: Any,
    fmt: PromptFormat,
    out_dir: Path,
    step: int = 0,
    adapter: AdapterHook | None = None,
    row_fields: RowFields | None = None,
) -> dict[str, float]:
    """Evaluate ``model`` (with ``adapter`` choosing the adapter per prompt, if given) and
    record the results in the active run; returns the metrics (``eval/``, ``val/``)."""
    from polylora.evaluate.evaluation import eval_subset, evaluate
    from polylora.model import loading as models

    metrics: dict[str, float] = {}
    if prep.splits.val:
        metrics.update(validation_loss(cfg, model, tok, fmt, prep.splits.val, step, adapter))
    if validation_metrics(cfg):
        metrics.update(validation_eval(cfg, prep, model, tok, fmt, out_dir, adapter))
    if not cfg.eval.enabled:
        return metrics
    eval_cfg = cfg.eval
    if prep.eval_metrics is not None and prep.eval_metrics != list(cfg.eval.metrics):
        # left out, or custom metrics added
        eval_cfg = OmegaConf.merge(cfg.eval, {"metrics": prep.eval_metrics})
    subset = eval_subset(prep.splits.test, cfg.eval.subset_size)
    log_truncation("test", EncodedDataset(subset, tok, fmt, cfg.data.max_length),
                   cfg.data.max_length)
    report = evaluate(
        model, tok, prep.splits.test, fmt, eval_cfg, prep.checker, cfg.data.max_length,
        autocast=models.autocast_dtype(cfg.hardware), adapter=adapter, normalize=prep.normalize,
    )
    writer.log_metrics(phase_metric("eval"), step=step)
    if row_fields is not None:
        for row in report.rows:
            row.update(row_fields(row["id"]))
    writer.write_generations(report.rows, out_dir)
    _log_passk_plot(report.metrics, out_dir)
    _log_sample_table(report.rows[: cfg.eval.log_examples])
    metrics.update(report.metrics)
    if cfg.eval.judge.enabled:
        metrics.update(_judge_against_baseline(cfg, report.rows, out_dir))
    return metrics


def log_truncation(split: str, data: EncodedDataset, max_length: int) -> None:
    """Log what ``data.max_length`` cut from a split (one line, and data/* metrics)."""
    line = data.truncation.summary(split, max_length)
    if line:
        log.warning(line)
    writer.log_metrics(data.truncation.metrics(split))


def validation_loss(
    cfg: DictConfig,
    model: Any,
    tok: Any,
    fmt: PromptFormat,
    val: Sequence[Example],
    step: int,
    adapter: AdapterHook | None = None,
) -> dict[str, float]:
    """Final reference loss on the validation split, the last point of the eval/loss curve
    (with early stopping this is the best checkpoint's)."""
    from polylora.evaluate.evaluation import grouped_nll
    from polylora.model.loading import autocast_dtype

    nll = grouped_nll(model, tok, val, fmt, cfg.data.max_length, cfg.train.batch_size,
                      autocast=autocast_dtype(cfg.hardware), adapter=adapter)
    loss = sum(nll) / len(nll)
    out = {names.VAL_LOSS: loss, names.VAL_PERPLEXITY: math.exp(min(loss, 50.0))}
    writer.log_metrics(out, step=step)
    return out


def validation_eval(
    cfg: DictConfig,
    prep: Prepared,
    model: Any,
    tok: Any,
    fmt: PromptFormat,
    out_dir: Path,
    adapter: AdapterHook | None = None,
) -> dict[str, float]:
    """The test evaluation's machinery on a fixed subset of the validation split (by id), so
    searches optimize ``val/<metric>`` and never see the test split."""
    from polylora.evaluate.evaluation import MODEL_METRICS, evaluate
    from polylora.model.loading import autocast_dtype

    settings = cast(dict[str, Any], OmegaConf.to_container(cfg.eval, resolve=True))
    settings["subset_size"] = cfg.eval.get("val_subset_size") or cfg.eval.subset_size
    metrics = prep.eval_metrics if prep.eval_metrics is not None else list(cfg.eval.metrics)
    settings["metrics"] = [m for m in metrics if m not in MODEL_METRICS]
    report = evaluate(model, tok, prep.splits.val, fmt, OmegaConf.create(settings),
                      prep.checker, cfg.data.max_length, autocast=autocast_dtype(cfg.hardware),
                      adapter=adapter, normalize=prep.normalize)
    writer.write_generations(report.rows, out_dir, validation=True)
    return {names.VAL_PREFIX + k.split("/", 1)[1]: v for k, v in report.metrics.items()}


def _judge_against_baseline(
    cfg: DictConfig, rows: list[dict[str, Any]], out_dir: Path
) -> dict[str, float]:
    """LLM-judge this run's answers against ``eval.judge.baseline_run`` (skipped without a
    key: the run still finishes)."""
    from polylora.judge import runs as judge_runs

    if not cfg.eval.judge.baseline_run:
        raise ConfigError("eval.judge.enabled=true needs eval.judge.baseline_run=<MLflow run id>")
    settings = cast(dict[str, Any], OmegaConf.to_container(cfg.eval.judge, resolve=True))
    if cfg.eval.judge.baseline_run == REFERENCE_BASELINE:  # the data's own responses
        baseline = [{**r, "greedy": r["references"][0], "samples": r["references"][:1]}
                    for r in rows]
        labels = ("reference", "candidate")
    else:
        baseline = judge_runs.load_run_rows(cfg.eval.judge.baseline_run, cfg.tracking.uri)
        labels = ("baseline", "candidate")
    result = judge_runs.judge_rows(
        baseline, rows, judge_runs.judge_config(settings), cfg.eval.judge.answers, labels
    )
    if result is None:
        return {}
    path = result.write_jsonl(out_dir / names.JUDGE_FILE)
    writer.log_artifact(path, names.EVAL_ARTIFACTS)
    return {k: float(v) for k, v in result.to_metrics().items() if isinstance(v, (int, float))}


def _log_passk_plot(metrics: dict[str, float], out_dir: Path) -> None:
    """pass@k vs k with margins of error, when the run computed pass@k."""
    from polylora.render.plots import passk_plot

    with contextlib.suppress(DataError):  # no pass@k in this run's metrics
        writer.log_artifact(passk_plot(metrics, out_dir / names.PASSK_PLOT_FILE),
                              names.EVAL_ARTIFACTS)


def _log_sample_table(rows: list[dict[str, Any]]) -> None:
    """A few generations as an MLflow table (for 'review sample outputs')."""
    if not rows:
        return
    table = {
        "id": [r["id"] for r in rows],
        "prompt": [
            r["prompt"] if isinstance(r["prompt"], str) else json.dumps(r["prompt"]) for r in rows
        ],
        "greedy": [r["greedy"] or "" for r in rows],
        "samples": [" | ".join(r["samples"][:5]) for r in rows],
        "reference": [r["references"][0] for r in rows],
    }
    writer.log_table(table, names.SAMPLES_TABLE_ARTIFACT)
