"""Writing the run record: tags, the config, data sizes, curves, generations and final
metrics, each under the name :mod:`polylora.record.names` gives it, into the active MLflow run
(or, through a client, a run other than the active one) and the run's output folder. The one
writer: the pipeline, the Trainer's callbacks, monitors, merged and routed evaluations, sweeps,
comparisons and the judge all log through here."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from polylora.data.jsonl import write_rows
from polylora.data.splits import Splits
from polylora.record import names, redaction, tracking
from polylora.record import store as tracking_store
from polylora.record.provenance import provenance_tags

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def objective_name(cfg: DictConfig) -> str:
    """The objective's config name (``ce``, ``polychromic``): the file of ``conf/objective``
    chosen under Hydra, else the one whose ``_target_`` matches, else the class name."""
    try:
        from hydra.core.hydra_config import HydraConfig

        choice = HydraConfig.get().runtime.choices.get("objective")
        if choice:
            return str(choice)
    except ValueError:  # composed outside a Hydra job (tests, merge)
        pass
    target = str(OmegaConf.select(cfg, "objective._target_", default="") or "")
    import yaml

    for path in sorted((CONF_DIR / "objective").glob("*.yaml")):
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if isinstance(loaded, dict) and loaded.get("_target_") == target:
            return path.stem
    return target.rsplit(".", 1)[-1]


def run_tags(cfg: DictConfig, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Tags: experiment, group (for seed aggregation), objective, overrides, git commit, the
    run's provenance (:func:`polylora.record.provenance.provenance_tags`: code revision, library
    versions, resolved precision, command line), the config's ``tracking.tags`` and ``extra``
    (e.g. :func:`merge_tags`)."""
    tags: dict[str, Any] = {
        names.EXPERIMENT_TAG: cfg.experiment,
        names.GROUP_TAG: cfg.tracking.group,
        names.OBJECTIVE_TAG: objective_name(cfg),
        names.SEED_TAG: cfg.seed,
        names.CHECKPOINT_TAG: cfg.train.get("checkpoint", "final") if cfg.train.enabled else None,
        names.OUTPUT_DIR_TAG: cfg.output_dir,
        names.GIT_COMMIT_TAG: tracking.git_commit(),
    }
    try:
        from hydra.core.hydra_config import HydraConfig

        tags[names.OVERRIDES_TAG] = " ".join(HydraConfig.get().overrides.task)
    except ValueError:  # not running under Hydra (tests composing the config)
        pass
    if cfg.data.partition_by:
        tags[names.PARTITION_TAG] = f"{cfg.data.partition_by}={cfg.data.partition_value}"
    tags.update(provenance_tags(cfg.hardware))
    tags.update(cfg.tracking.tags or {})
    tags.update(extra or {})
    return {k: str(v) for k, v in tags.items() if v is not None}


def merge_tags(
    method: str,
    sources: Sequence[str],
    weights: Sequence[float] | None = None,
    density: float | None = None,
    k: int | None = None,
    weighting: str | None = None,
) -> dict[str, str]:
    """The tags of a run that evaluates merged (or routed) adapters."""
    tags = {names.MERGE_TAG: method, names.MERGE_SOURCES_TAG: ",".join(sources)}
    if weights is not None:
        tags[names.MERGE_WEIGHTS_TAG] = ",".join(f"{w:g}" for w in weights)
    if density is not None:
        tags[names.MERGE_DENSITY_TAG] = f"{density:g}"
    if k is not None:
        tags[names.MERGE_K_TAG] = str(k)
    if weighting is not None:
        tags[names.MERGE_WEIGHTING_TAG] = weighting
    return tags


def write_config(cfg: DictConfig, out_dir: Path) -> Path:
    """``config.yaml`` (resolved, secrets redacted) in ``out_dir`` and as an artifact."""
    path = out_dir / names.CONFIG_FILE
    path.write_text(redaction.config_yaml(cfg))
    log_artifact(path)
    return path


def log_data_summary(
    cfg: DictConfig, splits: Splits, left_out: Sequence[str], out_dir: Path
) -> None:
    """Split sizes (and groups per split) as metrics, the small-data size bucket as a tag,
    the split report as an artifact, and each split as an MLflow dataset input."""
    import mlflow

    from polylora.data.size_buckets import dataset_size_bucket

    report = splits.report()
    metrics = {names.data_size_metric(name): float(n) for name, n in report["counts"].items()}
    metrics[names.DATA_TOTAL] = float(report["total"])
    for name, n in (report.get("groups") or {}).items():
        metrics[names.data_groups_metric(name)] = float(n)
    log_metrics(metrics)
    mlflow.set_tag(names.DATASET_SIZE_BUCKET_TAG, dataset_size_bucket(len(splits.train)))
    if left_out:
        mlflow.set_tag(names.METRICS_LEFT_OUT_TAG, ",".join(left_out))
    path = out_dir / names.SPLIT_REPORT_FILE
    path.write_text(json.dumps(report, indent=2, default=str))
    log_artifact(path)
    data_path = OmegaConf.select(cfg, "data.path", default=None)
    source = {"polylora.data": str(cfg.data.name)}
    if data_path:
        source["path"] = str(data_path)
    by_split = {"train": splits.train, "validation": splits.val, "test": splits.test}
    tracking.log_datasets(by_split, str(cfg.data.name), source)


def write_generations(
    rows: Sequence[Mapping[str, Any]], out_dir: Path, validation: bool = False
) -> Path:
    """The test (or validation) subset's ``generations.jsonl``, in ``out_dir`` and as an
    artifact under ``eval/`` (``val/``)."""
    file = names.VAL_GENERATIONS_FILE if validation else names.GENERATIONS_FILE
    path = write_rows(rows, out_dir / file)
    log_artifact(path, names.VAL_ARTIFACTS if validation else names.EVAL_ARTIFACTS)
    return path


def write_metrics(metrics: Mapping[str, float], out_dir: Path) -> Path:
    """``metrics.json``: every final metric of the run, sorted by name."""
    path = out_dir / names.METRICS_FILE
    path.write_text(json.dumps(dict(metrics), indent=2, sort_keys=True))
    return path


def read_metrics(out_dir: Path) -> dict[str, float]:
    """The ``metrics.json`` of a finished run's output folder."""
    return {k: float(v) for k, v in json.loads((out_dir / names.METRICS_FILE).read_text()).items()}


@contextmanager
def recorded_run(
    cfg: DictConfig,
    tags: Mapping[str, str],
    splits: Splits,
    left_out: Sequence[str],
    out_dir: Path,
    resume_run_id: str | None = None,
) -> Iterator[Any]:
    """The MLflow run of one job (FAILED if the body raises), with its id, config and data
    summary recorded before the body runs; yields the active run."""
    with tracking.mlflow_run(cfg, tags, resume_run_id) as active:
        (out_dir / names.RUN_ID_FILE).write_text(active.info.run_id)
        write_config(cfg, out_dir)
        log_data_summary(cfg, splits, left_out, out_dir)
        yield active


def finish_run(metrics: dict[str, float], out_dir: Path, started: float, step: int = 0,
               price_per_hour: float = 0.0) -> None:
    """Add the run's wall time, peak memory and cost (``run/cost_usd``: compute at
    ``price_per_hour`` plus the judge) to ``metrics``, log the final values (the validation
    curve's last point is already logged) and write ``metrics.json``."""
    from polylora.record.cost import run_cost
    from polylora.record.memory import peak_rss_mb

    metrics[names.RUN_WALL_TIME] = time.time() - started
    metrics[names.RUN_PEAK_RSS] = peak_rss_mb()
    metrics.update(run_cost(price_per_hour, metrics[names.RUN_WALL_TIME], metrics))
    curve = (names.VAL_LOSS, names.VAL_PERPLEXITY)
    log_metrics({k: v for k, v in metrics.items() if k not in curve}, step=step)
    write_metrics(metrics, out_dir)


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log finite scalar metrics to the active run (MLflow rejects NaN names/values oddly)."""
    import math

    import mlflow

    if not tracking.is_main_process():
        return
    clean = {
        names.mlflow_metric_name(k): float(v)
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and math.isfinite(float(v))
    }
    if clean:
        tracking_store.call("log metrics", mlflow.get_tracking_uri(), mlflow.log_metrics, clean,
                            step=step)


def log_params(params: Mapping[str, Any]) -> None:
    """Log params to the active run as they are (a step's settings, not the job's config)."""
    import mlflow

    mlflow.log_params(dict(params))

def set_tags(tags: Mapping[str, str]) -> None:
    """Set tags on the active run (redacted like every tag)."""
    import mlflow

    if not tracking.is_main_process():
        return
    tracking_store.call("set tags", mlflow.get_tracking_uri(), mlflow.set_tags,
                        tracking.redact_tags(tags))


def log_artifact(path: Path, artifact_path: str | None = None) -> None:
    """Log a file or folder to the active run."""
    import mlflow

    if not tracking.is_main_process():
        return
    log_fn = mlflow.log_artifacts if path.is_dir() else mlflow.log_artifact
    tracking_store.call(f"log {path.name}", mlflow.get_tracking_uri(), log_fn, str(path),
                        artifact_path)


def set_active_run_tag(key: str, value: str) -> None:
    """Set one tag on the active run of this process; nothing when no run is active."""
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.set_tag(key, value)


def log_table(table: Mapping[str, Sequence[Any]], artifact_file: str) -> None:
    """Log columns of equal length as an MLflow table artifact of the active run."""
    import mlflow

    mlflow.log_table(data=dict(table), artifact_file=artifact_file)


def log_batch(
    client: Any,
    run_id: str,
    params: Mapping[str, str] | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, str] | None = None,
    step: int = 0,
) -> None:
    """Params, metrics (timestamped now, at ``step``) and tags onto run ``run_id`` through
    ``client`` (not the active run), in batches MLflow accepts (at most 100 params and 100
    tags, 1000 entries in all)."""
    import itertools
    import time

    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    param_items = [Param(k, v) for k, v in (params or {}).items()]
    metric_items = [Metric(k, float(v), now, step) for k, v in (metrics or {}).items()]
    tag_items = [RunTag(k, v) for k, v in (tags or {}).items()]
    empty: list[Any] = []
    chunks = itertools.zip_longest(
        _chunks(param_items, 90), _chunks(metric_items, 800), _chunks(tag_items, 90),
        fillvalue=empty,
    )
    for param_batch, metric_batch, tag_batch in chunks:
        client.log_batch(run_id, params=param_batch, metrics=metric_batch, tags=tag_batch)


def _chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    """``items`` in consecutive lists of at most ``size``."""
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def log_run_artifact(client: Any, run_id: str, path: Path, artifact_path: str | None = None
                     ) -> None:
    """A file or folder as an artifact of run ``run_id`` through ``client``."""
    if path.is_dir():
        client.log_artifacts(run_id, str(path), artifact_path)
    else:
        client.log_artifact(run_id, str(path), artifact_path)


def mark_killed(client: Any, run_ids: Sequence[str]) -> None:
    """End the runs ``run_ids`` (left RUNNING by an interrupted process) as KILLED, so the
    store shows no run as still going."""
    for run_id in run_ids:
        client.set_terminated(run_id, status="KILLED")
