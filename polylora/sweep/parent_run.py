"""The sweep's MLflow parent run: created once per study (reopened on resume), its trials'
runs as children, the best result and trial counts logged to it when the sweep ends.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from polylora.sweep.tags import PARENT_TAG, ROLE_TAG, STUDY_TAG, TRIAL_TAG
from polylora.tracking import mlflow_metric_name
from polylora.tracking_store import check_artifact_location, first_use_lock

log = logging.getLogger(__name__)


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
        with first_use_lock(tracking_uri):  # the store's migration and the experiment, once
            client = mlflow.MlflowClient(tracking_uri=tracking_uri)
            exp = client.get_experiment_by_name(experiment)
            exp_id = (exp.experiment_id if exp is not None
                      else client.create_experiment(experiment))
            exp = client.get_experiment(exp_id)
        check_artifact_location(tracking_uri, experiment, exp.artifact_location)
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

    def log_outcome(self, best: Mapping[str, Any], counts: Mapping[str, int],
                    totals: Mapping[str, float] | None = None) -> None:
        """Best value(s)/params, trial counts and the study's totals (``study/*``: cost, steps,
        tokens/s): metrics and tags (both can change on resume, unlike params)."""
        import time

        from mlflow.entities import Metric, RunTag

        now = int(time.time() * 1000)
        step = counts.get("COMPLETE", 0)
        metrics = [Metric(f"trials/{k.lower()}", float(v), now, step) for k, v in counts.items()]
        metrics += [Metric(k, float(v), now, step) for k, v in (totals or {}).items()]
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
