"""The sweep's MLflow parent run: created once per study (reopened on resume), its trials'
runs as children, the best result and trial counts logged to it when the sweep ends.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from polylora.errors import PolyloraError
from polylora.record import names, reader, writer
from polylora.record.names import ROLE_TAG, RUN_NAME_TAG, STUDY_TAG, SWEEP_ROLE, TRIAL_TAG
from polylora.record.store import check_artifact_location, first_use_lock
from polylora.record.tracking import store_client

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
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        with first_use_lock(tracking_uri):  # the store's migration and the experiment, once
            client = store_client(tracking_uri)
            exp = client.get_experiment_by_name(experiment)
            exp_id = (exp.experiment_id if exp is not None
                      else client.create_experiment(experiment))
            exp = client.get_experiment(exp_id)
        check_artifact_location(tracking_uri, experiment, exp.artifact_location)
        from polylora.record.redaction import redact
        from polylora.record.tracking import redact_tags

        all_tags = redact_tags({ROLE_TAG: SWEEP_ROLE, STUDY_TAG: study, RUN_NAME_TAG: study,
                                **tags})
        params = redact(dict(params))
        if existing_run_id:
            try:
                run = reader.get_run(client, existing_run_id)
            except PolyloraError:
                log.warning("parent run %s not found in %s: starting a new one",
                            existing_run_id, tracking_uri)
            else:
                client.update_run(existing_run_id, status="RUNNING")
                writer.log_batch(client, existing_run_id,
                                 tags={k: str(v) for k, v in all_tags.items()})
                ids = sorted({exp_id, run.experiment_id})
                return cls(client, existing_run_id, ids)
        run = client.create_run(exp_id, run_name=study, tags=all_tags)
        if params:
            writer.log_batch(client, run.info.run_id,
                             params={k: str(v)[:6000] for k, v in params.items()})
        return cls(client, run.info.run_id, [exp_id])

    def children(self) -> dict[int, Any]:
        """Trial number → the trial's MLflow run (the newest, preferring FINISHED ones)."""
        runs = reader.child_runs(self.client, self.experiment_ids, self.run_id)
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
        running = reader.child_runs(self.client, self.experiment_ids, self.run_id,
                                    running_only=True)
        for run in running:
            if run.data.tags.get(TRIAL_TAG) in wanted:
                self.client.set_terminated(run.info.run_id, status="KILLED")

    def log_outcome(self, best: Mapping[str, Any], counts: Mapping[str, int],
                    totals: Mapping[str, float] | None = None) -> None:
        """Best value(s)/params, trial counts and the study's totals (``study/*``: cost, steps,
        tokens/s): metrics and tags (both can change on resume, unlike params)."""
        metrics = {names.trials_metric(k): float(v) for k, v in counts.items()}
        metrics.update({k: float(v) for k, v in (totals or {}).items()})
        tags: dict[str, str] = {}
        if "value" in best:
            metrics[names.BEST_VALUE] = float(best["value"])
        for name, value in best.get("values", {}).items():
            metrics[names.best_metric(name)] = float(value)
        if "trial" in best:
            tags[names.BEST_TRIAL_TAG] = str(best["trial"])
        for name, value in best.get("params", {}).items():
            tags[names.best_param_tag(name)] = str(value)
        if "pareto_trials" in best:
            tags[names.PARETO_TRIALS_TAG] = ",".join(str(t) for t in best["pareto_trials"])
        writer.log_batch(self.client, self.run_id, metrics=metrics, tags=tags,
                         step=counts.get("COMPLETE", 0))

    def log_files(self, paths: Sequence[Path]) -> None:
        """Attach files (summary table, results) to the parent run."""
        for path in paths:
            if path.exists():
                writer.log_run_artifact(self.client, self.run_id, path)

    def end(self, status: str = "FINISHED") -> None:
        """End the parent run (FINISHED, FAILED or KILLED)."""
        self.client.set_terminated(self.run_id, status=status)
