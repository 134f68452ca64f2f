"""MLflow's side of a run: the store and experiment, one run per job with the flattened
config as params, its datasets, and the run's end. Curves, tags and artifacts are logged
through :mod:`polylora.record.writer`.

A run that raises ends FAILED (never left RUNNING). Secrets are never logged: params and
tags go through ``polylora.record.redaction`` (credential keys dropped, secret values replaced).
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from omegaconf import DictConfig

from polylora.data.example import Example
from polylora.record.names import EXPERIMENT_KIND_TAG, OVERRIDES_TAG, PARENT_TAG, mlflow_metric_name
from polylora.record.store import TrackingError, call, check_artifact_location

log = logging.getLogger(__name__)

PARENT_RUN_ENV = "POLYLORA_PARENT_RUN_ID"
# MLflow 3 opens an untagged experiment in its GenAI view (traces, "No data"); this kind opens
# the training view with runs, metrics and charts.
EXPERIMENT_KIND = "custom_model_development"


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists → {'a.b.c': value}; lists of scalars stay one value."""
    out: dict[str, Any] = {}
    if isinstance(node, Mapping):
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    out[prefix[:-1]] = node
    return out


#: The param naming what a run computed in (``fp32``, ``fp32+autocast-bf16``, ``bf16``, ...).
RESOLVED_PRECISION = "hardware.resolved_precision"


def config_params(cfg: DictConfig) -> dict[str, str]:
    """The resolved config as MLflow params (values ≤ 6000 chars, credential keys dropped,
    secret values redacted)."""
    from polylora.record.redaction import is_secret_key, redacted_config

    params = {}
    for key, value in flatten(redacted_config(cfg)).items():
        if is_secret_key(key):
            continue
        params[mlflow_metric_name(key)] = str(value)[:6000]  # '@' in a key: pass_at_1
    if cfg.get("hardware") is not None:  # hardware.autocast=auto, resolved on this machine
        from contextlib import suppress

        from polylora.errors import ConfigError
        from polylora.record.provenance import resolved_precision

        with suppress(ConfigError):  # no such device here: the model load says so
            params[RESOLVED_PRECISION] = resolved_precision(cfg.hardware)
    return params


def git_commit(cwd: str | os.PathLike[str] | None = None) -> str | None:
    """The current git commit (with '-dirty' when the tree has changes), if in a repo."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5
        )
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def setup(uri: str, experiment: str) -> None:
    """Point MLflow at the tracking store and experiment (created on first use, one process
    at a time: see ``polylora.record.store``)."""
    import mlflow

    from polylora.record.store import first_use_lock

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(uri)
    with first_use_lock(uri):
        exp = call(f"open experiment {experiment!r}", uri, mlflow.set_experiment, experiment)
        check_artifact_location(uri, experiment, exp.artifact_location if exp else None)
        if exp is not None and EXPERIMENT_KIND_TAG not in (exp.tags or {}):
            call(f"tag experiment {experiment!r}", uri, mlflow.MlflowClient().set_experiment_tag,
                 exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)


def store_client(uri: str | None) -> Any:
    """An :class:`mlflow.MlflowClient` on ``uri`` (None: MLflow's default) that writes runs
    outside the active one (a sweep's parent run, a judge's verdicts); unlike the reader's,
    it creates a store that does not exist yet."""
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


def default_run_name(cfg: DictConfig) -> str:
    """``<experiment>-s<seed>``, plus ``-t<job>`` inside a Hydra multirun, so the MLflow
    runs table reads as what ran instead of random names."""
    name = f"{cfg.experiment}-s{cfg.seed}"
    try:
        from hydra.core.hydra_config import HydraConfig

        hydra_cfg = HydraConfig.get()
        if str(hydra_cfg.mode) == "RunMode.MULTIRUN":
            name += f"-t{hydra_cfg.job.num}"
    except ValueError:  # composed outside a Hydra job (tests, notebooks)
        pass
    return name


def log_datasets(
    splits: Mapping[str, Sequence[Example]], name: str, source: Mapping[str, str]
) -> None:
    """Each split as an MLflow dataset input (id, prompt, response), so the UI's Datasets
    column names the data a run saw and its digest shows when two runs saw different data."""
    import mlflow
    import pandas as pd
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.pandas_dataset import from_pandas

    if not is_main_process():
        return
    for split, examples in splits.items():
        if not examples:
            continue
        frame = pd.DataFrame(
            {
                "id": [e.id for e in examples],
                "prompt": [e.prompt if isinstance(e.prompt, str) else str(e.prompt)
                           for e in examples],
                "response": [e.response for e in examples],
            }
        )
        dataset = from_pandas(
            frame, source=CodeDatasetSource(dict(source)), name=f"{name}-{split}"
        )
        mlflow.log_input(dataset, context=split)


@contextmanager
def standalone_run(run_name: str, tags: Mapping[str, str]) -> Iterator[str]:
    """A run of the current experiment for a step outside the pipeline (clustering); yields
    its id. MLflow's context ends it FINISHED, or FAILED when the body raises."""
    import mlflow

    with mlflow.start_run(run_name=run_name, tags=dict(tags)) as run:
        yield str(run.info.run_id)


@contextmanager
def mlflow_run(
    cfg: DictConfig,
    tags: Mapping[str, str],
    resume_run_id: str | None = None,
) -> Iterator[Any]:
    """Start (or reopen) the job's run; on an exception it ends FAILED, else FINISHED."""
    import mlflow

    setup(cfg.tracking.uri, cfg.tracking.experiment)
    all_tags = redact_tags(tags)
    parent = os.environ.get(PARENT_RUN_ENV)
    if parent:
        all_tags[PARENT_TAG] = parent
    uri = str(cfg.tracking.uri)
    system_metrics = bool(cfg.tracking.get("system_metrics", False))
    if system_metrics:
        mlflow.set_system_metrics_sampling_interval(
            float(cfg.tracking.get("system_metrics_interval_s", 10.0)))
    run = call(
        "start the run",
        uri,
        mlflow.start_run,
        run_id=resume_run_id,
        run_name=None if resume_run_id else (cfg.tracking.run_name or default_run_name(cfg)),
        tags=all_tags,
        log_system_metrics=system_metrics,
    )
    try:
        if resume_run_id is None:
            params = config_params(cfg)
            items = list(params.items())
            for start in range(0, len(items), 90):  # MLflow caps params per batch at 100
                call("log params", uri, mlflow.log_params, dict(items[start : start + 90]))
        yield run
    except BaseException:
        status = "FAILED" if not _interrupted() else "KILLED"
        try:
            call("end the run", uri, mlflow.end_run, status=status)
        except TrackingError as exc:
            log.error("%s (the run may show RUNNING)", exc)
        raise
    else:
        call("end the run", uri, mlflow.end_run, status="FINISHED")


def redact_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    """Tags as strings, through the one redaction (``polylora.overrides`` item by item)."""
    from polylora.record.redaction import REDACTED, is_secret_key, redact_override, redact_text

    out = {}
    for key, value in tags.items():
        if value is None:
            continue
        if is_secret_key(key):
            out[key] = REDACTED
        elif key == OVERRIDES_TAG:
            out[key] = " ".join(redact_override(o) for o in str(value).split(" "))
        else:
            out[key] = redact_text(str(value))
    return out


def _interrupted() -> bool:
    """Whether the job was stopped from outside (Ctrl-C, or a sweep's pruner: Optuna's
    ``TrialPruned``) rather than failed: its run ends KILLED."""
    import sys

    exc = sys.exc_info()[1]
    optuna = sys.modules.get("optuna")
    pruned = optuna is not None and isinstance(exc, optuna.TrialPruned)
    return isinstance(exc, KeyboardInterrupt) or pruned


def is_main_process() -> bool:
    """False on DDP worker ranks (torchrun / accelerate launch set RANK > 0): only rank 0
    records to MLflow, saves the adapter and evaluates."""
    return int(os.environ.get("RANK", "0")) == 0
