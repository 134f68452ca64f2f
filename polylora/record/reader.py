"""Reading finished runs back from MLflow as typed objects: selection, final metrics, curves,
per-prompt scores, by the names :mod:`polylora.record.names` says a run writes.

The one reader: ``polylora compare``, ``polylora diagnose``, the headline report, sweeps, the
judge and adapter sources read runs and artifacts here. Everything goes through
:class:`mlflow.MlflowClient` or ``mlflow.artifacts`` (never the fluent run API), so reading
runs never touches an active run of the calling process.

Conventions:

* Metric names are turned into the registry's spelling with
  :func:`~polylora.record.names.canonical_metric`:
  MLflow stores ``eval/pass@10`` as ``eval/pass_at_10`` (it rejects ``@``), the registry and the
  per-prompt scores in ``eval/generations.jsonl`` call it ``pass@10``.
* Runs tagged ``polylora.kind=comparison`` (what ``polylora compare`` logs) and sweep parent
  runs (``polylora.role=sweep``) are never selected.
* ``eval/loss`` and ``eval/perplexity`` are training curves *and* final results. A final value
  logged without a step lands at step 0 *after* the curve: :func:`metric_history` drops such
  late step-0 points from curves (``training_only=True``) and :func:`final_value` picks the most
  recently logged value (MLflow's "latest" is the highest step's).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polylora.errors import PolyloraError
from polylora.record.names import (
    COMPARISON_KIND,
    DEFAULT_TRACKING_URI,
    EVAL_PREFIX,
    EXPERIMENT_TAG,
    GENERATIONS_ARTIFACT,
    GROUP_TAG,
    KIND_TAG,
    MOE_SUFFIX,
    OBJECTIVE_TAG,
    OBJECTIVE_TARGET_PARAM,
    PARENT_TAG,
    ROLE_TAG,
    SEED_PARAM,
    SEED_TAG,
    SWEEP_ROLE,
    TRACKING_URI_ENV,
    TRAIN_SIZE,
    canonical_metric,
)

__all__ = [
    "COMPARISON_KIND",
    "DEFAULT_TRACKING_URI",
    "EXPERIMENT_TAG",
    "GENERATIONS_ARTIFACT",
    "GROUP_TAG",
    "KIND_TAG",
    "OBJECTIVE_TAG",
    "PER_PROMPT_ALIASES",
    "ROLE_TAG",
    "SEED_TAG",
    "SWEEP_ROLE",
    "RunInfo",
    "canonical_metric",
    "child_runs",
    "comparison_runs",
    "download_artifact",
    "eval_metrics",
    "experiment_id",
    "final_value",
    "get_client",
    "get_run",
    "group_runs",
    "has_experiment",
    "load_generations",
    "metric_history",
    "objective_kind",
    "per_prompt_scores",
    "resolve_tracking_uri",
    "select_runs",
    "train_size",
]

_PAGE_SIZE = 1000


@dataclass
class RunInfo:
    """One MLflow run as plain data: ids, status, tags, params and final metric values."""

    run_id: str
    experiment_id: str
    status: str
    name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)  # MLflow's latest value per key
    start_time: int | None = None

    @property
    def seed(self) -> str | None:
        """The training seed (tag ``polylora.seed``, else param ``seed``)."""
        return self.tags.get(SEED_TAG) or self.params.get(SEED_PARAM)

    @classmethod
    def from_mlflow(cls, run: Any) -> RunInfo:
        """Convert a :class:`mlflow.entities.Run`."""
        return cls(
            run_id=run.info.run_id,
            experiment_id=run.info.experiment_id,
            status=run.info.status,
            name=run.info.run_name,
            tags=dict(run.data.tags),
            params=dict(run.data.params),
            metrics={k: float(v) for k, v in run.data.metrics.items()},
            start_time=run.info.start_time,
        )


def resolve_tracking_uri(uri: str | None = None) -> str:
    """``uri``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db`` (the config default)."""
    return uri or os.environ.get(TRACKING_URI_ENV) or DEFAULT_TRACKING_URI


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///") :]
    return None if rest in ("", ":memory:") else Path(rest)


def get_client(uri: str | None = None) -> Any:
    """An :class:`mlflow.MlflowClient` for ``uri`` (resolved as :func:`resolve_tracking_uri`).

    A ``sqlite:///`` store whose file does not exist is an error rather than a fresh, empty
    database created as a side effect of reading.
    """
    import mlflow

    resolved = resolve_tracking_uri(uri)
    path = _sqlite_path(resolved)
    if path is not None and not path.exists():
        raise PolyloraError(
            f"tracking store {resolved} does not exist (no file {path}); pass --tracking-uri "
            "or set MLFLOW_TRACKING_URI to the store your runs were logged to"
        )
    return mlflow.MlflowClient(tracking_uri=resolved)


def experiment_id(client: Any, name: str) -> str:
    """The id of the experiment called ``name``; a missing one lists the existing names."""
    exp = client.get_experiment_by_name(name)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        raise PolyloraError(
            f"no experiment named {name!r} in {client.tracking_uri}; "
            f"experiments: {', '.join(names) or 'none'}"
        )
    return str(exp.experiment_id)


def has_experiment(client: Any, name: str) -> bool:
    """Whether the store holds an experiment called ``name`` (a launch that never started a
    run has none)."""
    return client.get_experiment_by_name(name) is not None


def select_runs(
    client: Any,
    experiment: str,
    filter_string: str | None = None,
    status: str | None = "FINISHED",
) -> list[RunInfo]:
    """Runs of ``experiment`` with ``status`` that match the MLflow ``filter_string``.

    Deleted runs, comparison runs (tag ``polylora.kind=comparison``) and sweep parent runs
    (tag ``polylora.role=sweep``: they hold a sweep's best value, not a run's) are left out. Order:
    oldest first. A malformed filter raises a :class:`PolyloraError` quoting MLflow's reason.
    """
    from mlflow.entities import ViewType
    from mlflow.exceptions import MlflowException

    exp_id = experiment_id(client, experiment)
    clauses = [f"attributes.status = '{status}'"] if status else []
    if filter_string and filter_string.strip():
        clauses.append(filter_string.strip())  # MLflow filters only know AND
    full_filter = " and ".join(clauses)
    out: list[RunInfo] = []
    token = None
    while True:
        try:
            page = client.search_runs(
                [exp_id],
                filter_string=full_filter,
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=_PAGE_SIZE,
                order_by=["attributes.start_time ASC"],
                page_token=token,
            )
        except MlflowException as exc:
            raise PolyloraError(
                f"invalid --filter {filter_string!r}: {exc.message.splitlines()[0]} "
                "(MLflow syntax, e.g. \"tags.polylora.objective = 'ce'\")"
            ) from None
        out.extend(RunInfo.from_mlflow(r) for r in page)
        token = page.token
        if not token:
            break
    return [r for r in out
            if r.tags.get(KIND_TAG) != COMPARISON_KIND and r.tags.get(ROLE_TAG) != SWEEP_ROLE]


def comparison_runs(
    client: Any, experiment: str, since_ms: int | None = None
) -> list[RunInfo]:
    """The ``polylora compare`` runs (tag ``polylora.kind=comparison``) of ``experiment``,
    oldest first, started at or after ``since_ms`` (epoch milliseconds) when given: a launcher
    that ran compare reads its run from here, not from compare's printout."""
    exp_id = experiment_id(client, experiment)
    found = client.search_runs(
        [exp_id], filter_string=f"tags.`{KIND_TAG}` = '{COMPARISON_KIND}'",
        order_by=["attributes.start_time ASC"], max_results=_PAGE_SIZE,
    )
    runs = [RunInfo.from_mlflow(r) for r in found]
    return [r for r in runs if since_ms is None or (r.start_time or 0) >= since_ms]


def get_run(client: Any, run_id: str) -> RunInfo:
    """The run ``run_id``; an unknown id raises a :class:`PolyloraError`."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise PolyloraError(
            f"no run with id {run_id!r} in {client.tracking_uri}; list runs with "
            "`mlflow runs list --experiment-id <id>` or pass the right --tracking-uri"
        ) from None
    return RunInfo.from_mlflow(run)


def group_runs(runs: Iterable[RunInfo], tag: str) -> tuple[dict[str, list[RunInfo]], list[RunInfo]]:
    """Runs by the value of tag ``tag`` (``tags.``/``params.`` prefixes accepted; a bare name
    is looked up in tags, then params); also returns the runs that lack it."""
    groups: dict[str, list[RunInfo]] = {}
    missing: list[RunInfo] = []
    for run in runs:
        value = _lookup(run, tag)
        if value is None or value == "":
            missing.append(run)
        else:
            groups.setdefault(value, []).append(run)
    return dict(sorted(groups.items())), missing


def _lookup(run: RunInfo, key: str) -> str | None:
    if key.startswith("tags."):
        return run.tags.get(key[5:])
    if key.startswith("params."):
        return run.params.get(key[7:])
    value = run.tags.get(key)
    return value if value is not None else run.params.get(key)


def eval_metrics(run: RunInfo) -> dict[str, float]:
    """The run's final ``eval/*`` metrics under registry names (margins of error excluded)."""
    out: dict[str, float] = {}
    for key, value in run.metrics.items():
        if key.startswith(EVAL_PREFIX) and not key.endswith(MOE_SUFFIX) and math.isfinite(value):
            out[canonical_metric(key)] = float(value)
    return out


def objective_kind(run: RunInfo) -> str | None:
    """The objective's config name (``ce``, ``polychromic``, ...: tag ``polylora.objective``).

    Runs recorded before the tag held the config name carry a class name (or only the param
    ``objective._target_``); those two spellings are mapped back. None when the run has none.
    """
    raw = run.tags.get(OBJECTIVE_TAG) or run.params.get(OBJECTIVE_TARGET_PARAM)
    if not raw:
        return None
    low = raw.rsplit(".", 1)[-1].lower()
    if "polychromic" in low:
        return "polychromic"
    if low in ("ce", "crossentropy", "crossentropyobjective", "cross_entropy"):
        return "ce"
    return raw


def train_size(run: RunInfo) -> int | None:
    """How many training examples the run had (metric ``data/train``), or None."""
    value = run.metrics.get(TRAIN_SIZE)
    return None if value is None or not math.isfinite(value) else int(value)


def metric_history(
    client: Any, run_id: str, key: str, training_only: bool = True
) -> list[tuple[int, float]]:
    """The curve of ``key`` as ``(step, value)`` sorted by step.

    With ``training_only`` the points logged at step 0 after points at later steps (the
    pipeline's final, step-less evaluation) are dropped, so they do not pose as the first
    point of the training curve.
    """
    points = client.get_metric_history(run_id, key)
    ordered = sorted(points, key=lambda m: (m.timestamp, m.step))
    out: list[tuple[int, float]] = []
    max_step = -1
    for m in ordered:
        if training_only and m.step == 0 and max_step > 0:
            continue
        max_step = max(max_step, int(m.step))
        out.append((int(m.step), float(m.value)))
    return sorted(out, key=lambda p: p[0])


def final_value(client: Any, run_id: str, key: str) -> float | None:
    """The most recently *logged* value of ``key`` (not MLflow's highest-step one), or None."""
    points = client.get_metric_history(run_id, key)
    if not points:
        return None
    return float(max(points, key=lambda m: (m.timestamp, m.step)).value)


def load_generations(
    client: Any, run_id: str, artifact_path: str = GENERATIONS_ARTIFACT
) -> list[dict[str, Any]] | None:
    """The per-prompt rows of a run's ``eval/generations.jsonl``; None if it has none."""
    folder = artifact_path.rpartition("/")[0]
    listed = client.list_artifacts(run_id, folder or None)
    if not any(f.path == artifact_path for f in listed):
        return None
    with tempfile.TemporaryDirectory(prefix="polylora-gen-") as tmp, _no_progress_bar():
        local = Path(client.download_artifacts(run_id, artifact_path, tmp))
        text = local.read_text(encoding="utf-8")
    rows = []
    for i, line in enumerate(text.split("\n"), start=1):  # not splitlines(): U+2028 in samples
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise PolyloraError(
                f"run {run_id}: {artifact_path} line {i} is not JSON ({exc.msg}); "
                "re-run the evaluation to regenerate it"
            ) from None
    return rows


def download_artifact(
    artifact_uri: str | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
    tracking_uri: str | None = None,
) -> Path:
    """A local copy of an artifact: ``artifact_uri`` (``runs:/<id>/<path>``, ``models:/...``)
    or ``artifact_path`` of run ``run_id``. MLflow's own error passes through (its types vary
    with what is missing), for the caller to explain."""
    import mlflow

    return Path(mlflow.artifacts.download_artifacts(
        artifact_uri=artifact_uri, run_id=run_id, artifact_path=artifact_path,
        tracking_uri=tracking_uri,
    ))


def child_runs(
    client: Any, experiment_ids: Sequence[str], parent_run_id: str, running_only: bool = False
) -> list[Any]:
    """The MLflow runs tagged as children of ``parent_run_id`` (a sweep's trials), as MLflow
    returns them; with ``running_only`` only those still RUNNING."""
    query = f"tags.`{PARENT_TAG}` = '{parent_run_id}'"
    if running_only:
        return list(client.search_runs(
            list(experiment_ids), filter_string=f"{query} and attributes.status = 'RUNNING'"))
    return list(client.search_runs(list(experiment_ids), filter_string=query, max_results=5000))


@contextmanager
def _no_progress_bar() -> Iterator[None]:
    """Silence MLflow's per-download progress bar (one per run would flood the terminal)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    old = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


#: Per-prompt score keys of ``eval/generations.jsonl`` whose aggregate is logged under another
#: name: the rows' ``loss`` is the evaluation subset's NLL, logged as ``eval/test_loss``.
PER_PROMPT_ALIASES = {"loss": "test_loss"}


def per_prompt_scores(
    rows: Sequence[Mapping[str, Any]], metrics: Iterable[str] | None = None
) -> dict[str, dict[str, float]]:
    """``{metric: {prompt_id: score}}`` from generations rows (finite numbers only).

    ``metrics`` (registry names) limits the result; score keys are canonicalised like
    metric names (and ``loss`` read as ``test_loss``, see ``PER_PROMPT_ALIASES``). A prompt id
    repeated in one run is averaged.
    """
    wanted = None if metrics is None else {canonical_metric(m) for m in metrics}
    sums: dict[str, dict[str, list[float]]] = {}
    for row in rows:
        pid = row.get("id")
        scores = row.get("scores") or {}
        if pid is None or not isinstance(scores, Mapping):
            continue
        for key, value in scores.items():
            name = canonical_metric(str(key))
            name = PER_PROMPT_ALIASES.get(name, name)
            if wanted is not None and name not in wanted:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not math.isfinite(float(value)):
                continue
            sums.setdefault(name, {}).setdefault(str(pid), []).append(float(value))
    return {
        name: {pid: sum(v) / len(v) for pid, v in by_id.items()} for name, by_id in sums.items()
    }


def resolve_adapter(ref: str) -> Path:
    """The local folder of adapter ``ref``: the path itself, or where an MLflow
    ``runs:/<id>/adapter`` URI downloads to (the model layer checks it holds an adapter)."""
    if ref.startswith(("runs:/", "models:/", "mlflow-artifacts:")):
        try:
            return download_artifact(artifact_uri=ref)
        except Exception as exc:  # MLflow raises several types for a missing run/artifact
            raise PolyloraError(f"cannot fetch adapter {ref!r} from MLflow: {exc}") from None
    return Path(ref).expanduser()
