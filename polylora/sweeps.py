"""Sweep bookkeeping shared by the ``polylora_optuna`` Hydra sweeper: the MLflow parent run,
trial tags, the per-trial summary table, study naming and trial ownership (for resuming).

A sweep is started with ``python -m polylora -m +experiment=smoke +hparams_search=lr``; the
sweeper (``hydra_plugins/polylora_sweeper``) calls into this module. Nothing here imports
Optuna or Hydra at module level, so it stays cheap to import.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import os
import socket
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polylora.record.names import (  # noqa: F401  (re-exported: sweeps' metric names)
    VALIDATION_LOSS,
    metric_split,
    optimized_metrics,
    validation_name,
)
from polylora.tracking import PARENT_RUN_ENV, mlflow_metric_name

log = logging.getLogger(__name__)

#: Tags every trial's MLflow run carries (set by the sweeper through ``tracking.tags``).
TRIAL_TAG = "polylora.trial"
STUDY_TAG = "polylora.study"
ROLE_TAG = "polylora.role"
PARENT_TAG = "mlflow.parentRunId"
#: Optuna study user attribute holding the parent run id (so a resumed sweep reuses it).
PARENT_ATTR = "polylora.parent_run_id"
#: Optuna study user attribute: the study is driven by polylora sweepers (trials are signed).
SWEEPER_ATTR = "polylora.sweeper"
#: Optuna trial user attributes written by the sweeper.
OWNER_ATTR = "polylora.owner"
ERROR_ATTR = "polylora.error"

SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"


def check_search_metrics(metrics: Sequence[str]) -> None:
    """Refuse a search whose ``optimized_metric`` is computed on the test split: selecting
    hyperparameters on the data the final numbers are reported on biases them upward."""
    from polylora.errors import ConfigError

    test = [m for m in metrics if metric_split(m) == "test"]
    if test:
        fixed = [validation_name(m) if m in test else m for m in metrics]
        shown = fixed[0] if len(fixed) == 1 else "[" + ",".join(fixed) + "]"
        raise ConfigError(
            f"optimized_metric={','.join(test)} is computed on the test split, which a search "
            f"must not select on (test metrics are for the final report); optimize the "
            f"validation copy instead: optimized_metric={shown} (scored on "
            "eval.val_subset_size prompts of the validation split, fixed by id)"
        )


def study_name(experiment: str, search: str | None) -> str:
    """``smoke`` + ``lr`` → ``smoke-lr``: one study per (experiment, search)."""
    return f"{experiment}-{search}" if search else f"{experiment}-sweep"


def _quote(value: str) -> str:
    """``value`` as a single-quoted string of Hydra's override grammar."""
    from hydra.core.override_parser.types import Quote, QuotedString

    return QuotedString(text=value, quote=Quote.single).with_quotes()


def trial_overrides(trial: int, study: str, parent_run_id: str | None,
                    name_runs: bool = True) -> list[str]:
    """Overrides that tag a trial's MLflow run (merged into ``tracking.tags``) and, with
    ``name_runs``, name it ``<study>-trial-<N>``.

    Passing the parent id as a tag (not only through ``POLYLORA_PARENT_RUN_ID``) makes a
    trial a child run whatever process or machine it runs in (joblib, Slurm, Ray).
    """
    tags = {TRIAL_TAG: str(trial), STUDY_TAG: study}
    if parent_run_id:
        tags[PARENT_TAG] = parent_run_id
    body = ", ".join(f"{k}:{_quote(v)}" for k, v in tags.items())
    out = [f"++tracking.tags={{{body}}}"]
    if name_runs:
        out.append(f"tracking.run_name={_quote(f'{study}-trial-{trial}')}")
    return out


# --- trial ownership (which process runs a RUNNING trial; stale ones are reclaimed) -------


def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), '' where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


def owner_id() -> str:
    """``host:pid:start`` identifying this process (start time guards against pid reuse)."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_process_start(pid)}"


def owner_alive(owner: str | None) -> bool | None:
    """True/False for an owner on this host; None when it can't be told (other host)."""
    if not owner:
        return None
    host, _, rest = owner.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not start or _process_start(pid) == start


def is_sqlite(storage: Any) -> bool:
    """Whether an Optuna storage URL is a sqlite file (lockable by :func:`storage_lock`)."""
    return bool(storage) and str(storage).startswith("sqlite:///")


@contextlib.contextmanager
def storage_lock(storage: str | None) -> Iterator[None]:
    """An exclusive lock per sqlite study file, for this machine (several sweeper processes
    share one study: ``launchers/parallel_workers.sh``); a no-op for server storages."""
    import fcntl
    import hashlib
    import tempfile

    if not is_sqlite(storage):
        yield
        return
    db = Path(str(storage)[len("sqlite:///"):]).expanduser().resolve()
    digest = hashlib.sha1(str(db).encode()).hexdigest()[:16]
    lock = Path(tempfile.gettempdir()) / f"polylora-study-{digest}.lock"
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def parent_env(run_id: str | None) -> Iterator[None]:
    """Set ``POLYLORA_PARENT_RUN_ID`` for trials started from this process (restored after)."""
    previous = os.environ.get(PARENT_RUN_ENV)
    if run_id:
        os.environ[PARENT_RUN_ENV] = run_id
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PARENT_RUN_ENV, None)
        else:
            os.environ[PARENT_RUN_ENV] = previous


# --- the MLflow parent run ------------------------------------------------------------------


class ParentRun:
    """The sweep's MLflow parent run, driven through ``MlflowClient`` (never the active run,
    so trials running in this same process can start their own runs)."""

    def __init__(self, client: Any, run_id: str, experiment_ids: list[str]) -> None:
        self.client = client
        self.run_id = run_id
        self.experiment_ids = experiment_ids

    @classmethod
    def open(
        cls,
        tracking_uri: str,
        experiment: str,
        study: str,
        existing_run_id: str | None,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
    ) -> ParentRun:
        """Reopen ``existing_run_id`` (a resumed sweep) or create the parent run."""
        import mlflow
        from mlflow.exceptions import MlflowException

        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(experiment)
        from polylora.redaction import redact
        from polylora.tracking import redact_tags

        all_tags = redact_tags({ROLE_TAG: "sweep", STUDY_TAG: study, "mlflow.runName": study,
                                **tags})
        params = redact(dict(params))
        if existing_run_id:
            try:
                run = client.get_run(existing_run_id)
            except MlflowException:
                log.warning("parent run %s not found in %s: starting a new one",
                            existing_run_id, tracking_uri)
            else:
                client.update_run(existing_run_id, status="RUNNING")
                for key, value in all_tags.items():
                    client.set_tag(existing_run_id, key, str(value))
                ids = sorted({exp_id, run.info.experiment_id})
                return cls(client, existing_run_id, ids)
        run = client.create_run(exp_id, run_name=study, tags=all_tags)
        items = [(k, str(v)[:6000]) for k, v in params.items()]
        from mlflow.entities import Param

        for start in range(0, len(items), 90):
            client.log_batch(run.info.run_id,
                             params=[Param(k, v) for k, v in items[start:start + 90]])
        return cls(client, run.info.run_id, [exp_id])

    def children(self) -> dict[int, Any]:
        """Trial number → the trial's MLflow run (the newest, preferring FINISHED ones)."""
        runs = self.client.search_runs(
            self.experiment_ids,
            filter_string=f"tags.`{PARENT_TAG}` = '{self.run_id}'",
            max_results=5000,
        )
        chosen: dict[int, Any] = {}
        for run in runs:
            number = run.data.tags.get(TRIAL_TAG)
            if number is None or not number.isdigit():
                continue
            key = int(number)
            old = chosen.get(key)
            rank = (run.info.status == "FINISHED", run.info.start_time or 0)
            if old is None or rank > (old.info.status == "FINISHED", old.info.start_time or 0):
                chosen[key] = run
        return chosen

    def kill_running_children(self, trials: Sequence[int]) -> None:
        """Mark the MLflow runs of interrupted trials KILLED (their process died mid-run)."""
        wanted = {str(t) for t in trials}
        if not wanted:
            return
        running = f"tags.`{PARENT_TAG}` = '{self.run_id}' and attributes.status = 'RUNNING'"
        for run in self.client.search_runs(self.experiment_ids, filter_string=running):
            if run.data.tags.get(TRIAL_TAG) in wanted:
                self.client.set_terminated(run.info.run_id, status="KILLED")

    def log_outcome(self, best: Mapping[str, Any], counts: Mapping[str, int]) -> None:
        """Best value(s)/params and trial counts: metrics and tags (both can change on resume,
        unlike params)."""
        import time

        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        step = counts.get("COMPLETE", 0)
        metrics = [Metric(f"trials/{k.lower()}", float(v), now, step) for k, v in counts.items()]
        tags: list[RunTag] = []
        if "value" in best:
            metrics.append(Metric("best_value", float(best["value"]), now, step))
        for name, value in best.get("values", {}).items():
            metrics.append(Metric(f"best/{mlflow_metric_name(name)}", float(value), now, step))
        if "trial" in best:
            tags.append(RunTag("polylora.best_trial", str(best["trial"])))
        for name, value in best.get("params", {}).items():
            tags.append(RunTag(f"best_param.{name}", str(value)))
        if "pareto_trials" in best:
            tags.append(RunTag("polylora.pareto_trials",
                               ",".join(str(t) for t in best["pareto_trials"])))
        self.client.log_batch(self.run_id, metrics=metrics, tags=tags)

    def log_files(self, paths: Sequence[Path]) -> None:
        """Attach files (summary table, results) to the parent run."""
        for path in paths:
            if path.exists():
                self.client.log_artifact(self.run_id, str(path))

    def end(self, status: str = "FINISHED") -> None:
        """End the parent run (FINISHED, FAILED or KILLED)."""
        self.client.set_terminated(self.run_id, status=status)


# --- the summary table ------------------------------------------------------------------------


@dataclass
class TrialRow:
    """One row of the summary table."""

    trial: int
    state: str
    values: dict[str, float | None]
    params: dict[str, Any]
    train_eval_gap: float | None
    duration_s: float | None
    run_id: str | None
    error: str | None


def train_eval_gap(metrics: Mapping[str, float]) -> float | None:
    """``train/eval_gap`` as logged, else ``eval/loss − train/final_loss``, else None."""
    if "train/eval_gap" in metrics:
        return float(metrics["train/eval_gap"])
    if "eval/loss" in metrics and "train/final_loss" in metrics:
        return float(metrics["eval/loss"]) - float(metrics["train/final_loss"])
    return None


def trial_rows(trials: Sequence[Any], metric_names: Sequence[str],
               children: Mapping[int, Any]) -> list[TrialRow]:
    """Rows from Optuna's frozen trials joined with their MLflow child runs."""
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        run = children.get(t.number)
        metrics = dict(run.data.metrics) if run is not None else {}
        values: dict[str, float | None] = dict.fromkeys(metric_names)
        if t.values is not None:
            values = dict(zip(metric_names, t.values, strict=False))
        duration = None
        if run is not None and run.info.end_time and run.info.start_time:
            duration = (run.info.end_time - run.info.start_time) / 1000.0
        elif t.datetime_start is not None and t.datetime_complete is not None:
            duration = (t.datetime_complete - t.datetime_start).total_seconds()
        rows.append(TrialRow(
            trial=t.number,
            state=t.state.name,
            values=values,
            params=dict(t.params),
            train_eval_gap=train_eval_gap(metrics),
            duration_s=duration,
            run_id=run.info.run_id if run is not None else None,
            error=t.user_attrs.get(ERROR_ATTR),
        ))
    return rows


def _columns(rows: Sequence[TrialRow], metric_names: Sequence[str]) -> list[str]:
    params: list[str] = []
    for row in rows:
        params += [p for p in row.params if p not in params]
    return ["trial", "state", *metric_names, *params, "train_eval_gap", "duration_s",
            "run_id", "error"]


def _record(row: TrialRow) -> dict[str, Any]:
    return {"trial": row.trial, "state": row.state, **row.values, **row.params,
            "train_eval_gap": row.train_eval_gap, "duration_s": row.duration_s,
            "run_id": row.run_id, "error": row.error}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def write_summary(rows: Sequence[TrialRow], metric_names: Sequence[str], out_dir: Path,
                  title: str = "") -> tuple[Path, Path]:
    """``summary.csv`` (full precision) and ``summary.md`` (rounded) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = _columns(rows, metric_names)
    csv_path = out_dir / SUMMARY_CSV
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            record = _record(row)
            writer.writerow({c: "" if record.get(c) is None else record.get(c) for c in columns})
    md_path = out_dir / SUMMARY_MD
    lines = [f"# {title}", ""] if title else []
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        record = _record(row)
        lines.append("| " + " | ".join(_cell(record.get(c)) for c in columns) + " |")
    lines += ["", "Optimized on: " + "; ".join(
        f"{m} ({metric_split(m)} split)" for m in metric_names
    ) + ". Test-split metrics are never optimized; report them once, for the chosen config."]
    md_path.write_text("\n".join(lines) + "\n")
    return csv_path, md_path


def best_summary(study: Any, metric_names: Sequence[str]) -> dict[str, Any]:
    """Best trial (one objective) or Pareto front (several) of an Optuna study; {} if none."""
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not complete:
        return {}
    if len(metric_names) == 1:
        best = study.best_trial
        return {"trial": best.number, "value": best.value, "params": dict(best.params)}
    front = study.best_trials
    return {
        "pareto_trials": [t.number for t in front],
        "solutions": [{"trial": t.number, "params": dict(t.params),
                       "values": dict(zip(metric_names, t.values, strict=False))}
                      for t in front],
    }


def write_json(path: Path, payload: Any) -> Path:
    """Write ``payload`` as indented JSON (for results attached to the parent run)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str))
    return path


# --- one GPU per parallel job ------------------------------------------------------------------


def gpu_for_job(job_num: Any) -> str:
    """The GPU a job should see: ``POLYLORA_GPUS`` (e.g. ``0,1,2,3``; default: every visible
    CUDA device) indexed by job number modulo their count; '' when there is none."""
    listed = os.environ.get("POLYLORA_GPUS")
    if listed is not None:
        gpus = [g.strip() for g in listed.split(",") if g.strip()]
    else:
        try:
            import torch

            gpus = [str(i) for i in range(torch.cuda.device_count())]
        except ImportError:
            gpus = []
    if not gpus:
        return ""
    return gpus[int(job_num) % len(gpus)]


def register_resolvers() -> None:
    """``${polylora_gpu:${hydra:job.num}}`` for ``hydra.job.env_set.CUDA_VISIBLE_DEVICES``
    (see ``polylora/conf/hydra/launcher/joblib_gpus.yaml``). Idempotent."""
    from omegaconf import OmegaConf

    if OmegaConf.has_resolver("polylora_gpu"):
        return
    register = getattr(OmegaConf, "register_resolver", None)  # omegaconf >= 2.4
    if register is None:
        OmegaConf.register_new_resolver("polylora_gpu", gpu_for_job)
    else:
        register("polylora_gpu", gpu_for_job)
