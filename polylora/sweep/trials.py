"""Which trials a sweep still owes and what happens to a trial whose sweeper died.

Optuna's RDB heartbeat does the second: every RUNNING trial of this process records a
heartbeat each ``heartbeat_interval`` seconds; one silent for ``grace_period`` seconds is
marked FAIL by the next sweeper that looks, and ``RetryHeartbeatStaleTrialCallback`` queues a
WAITING copy with the same parameters, which the next ``ask`` runs. Several workers on one
study count and ask under one lock (a file lock beside a sqlite study, a database lock on
PostgreSQL, MySQL or any other server database), so together they stop at exactly
``n_trials`` (Optuna's ``MaxTrialsCallback`` may overshoot when workers run in parallel).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, Trial, TrialState

from polylora.record import db_lock

log = logging.getLogger(__name__)

#: States of trials that count towards ``n_trials`` (WAITING retries are asked first).
TAKEN_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)


class RetryStaleTrial(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a stale trial, remembering (and saying) which trials it retried."""

    def __init__(self, max_retry: int | None) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(max_retry=max_retry)
        self.stale: list[int] = []

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        log.warning("trial %d was interrupted (its sweeper stopped sending heartbeats): "
                    "queued again with the same parameters", trial.number)
        self.stale.append(trial.number)
        super().__call__(study, trial)

    def take_stale(self) -> list[int]:
        """Trial numbers found stale since the last call."""
        out, self.stale = self.stale, []
        return out


def open_storage(url: Any, heartbeat_interval: int, grace_period: int | None,
                 retry: RetryStaleTrial) -> Any:
    """An RDB storage with heartbeats for a database URL; ``url`` unchanged otherwise
    (None: in memory, nothing to resume). ``heartbeat_interval`` <= 0 turns heartbeats off."""
    if not url or not isinstance(url, str) or "://" not in url:
        return url
    # sqlite: wait for a busy file; a server: check a pooled connection before use (a trial
    # can outlast the server's idle-connection timeout)
    engine_kwargs = ({"connect_args": {"timeout": 60}} if is_sqlite(url)
                     else {"pool_pre_ping": True})
    if heartbeat_interval <= 0:
        return RDBStorage(url, engine_kwargs=engine_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return RDBStorage(url, engine_kwargs=engine_kwargs,
                          heartbeat_interval=heartbeat_interval, grace_period=grace_period,
                          heartbeat_stale_trial_callback=retry)


def is_sqlite(storage: Any) -> bool:
    """Whether an Optuna storage URL is a sqlite file."""
    return isinstance(storage, str) and storage.startswith("sqlite:///")


def fail_stale(study: optuna.Study) -> None:
    """Mark trials without a recent heartbeat FAIL and queue their retries."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def taken(study: optuna.Study) -> int:
    """Trials that count towards n_trials: finished or RUNNING, except a FAIL trial that a
    later (WAITING or run) copy retries."""
    trials = study.get_trials(deepcopy=False)
    retried: set[int] = set()
    for t in trials:
        retried.update(t.system_attrs.get("retry_history", ()))
    return sum(1 for t in trials if t.state in TAKEN_STATES
               and not (t.state == TrialState.FAIL and t.number in retried))


def ask(study: optuna.Study, count: int) -> list[Trial]:
    """``count`` trials (queued retries first), each with a first heartbeat so a sweeper that
    dies from now on leaves them stale, not RUNNING for ever."""
    out = []
    with warnings.catch_warnings():
        # ask/tell with heartbeats is what Study.optimize does inside; the sweeper needs the
        # Hydra launcher between ask and tell, so it keeps the heartbeats itself (Heartbeat)
        warnings.filterwarnings("ignore", message="Heartbeat of storage")
        for _ in range(count):
            trial = study.ask()
            _beat(study, [trial])
            out.append(trial)
    return out


def _heartbeats(study: optuna.Study) -> Any:
    """The study's storage where it records heartbeats (an RDB storage with an interval, as
    Optuna wraps it), else None. Study exposes no public storage accessor."""
    storage = study._storage
    getter = getattr(storage, "get_heartbeat_interval", None)
    return storage if getter is not None and getter() else None


def has_heartbeat(study: optuna.Study) -> bool:
    """Whether the study's storage records heartbeats (so stale trials can be told)."""
    return _heartbeats(study) is not None


def _beat(study: optuna.Study, trials: Sequence[Trial]) -> None:
    storage = _heartbeats(study)
    if storage is not None:
        for trial in trials:
            storage.record_heartbeat(trial._trial_id)  # Trial exposes no public id


@contextlib.contextmanager
def heartbeat(study: optuna.Study, trials: Sequence[Trial]) -> Iterator[None]:
    """Record the trials' heartbeats every ``heartbeat_interval`` seconds while they run."""
    storage = _heartbeats(study)
    if storage is None or not trials:
        yield
        return
    interval = storage.get_heartbeat_interval()
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval):
            try:
                _beat(study, trials)
            except Exception as exc:  # a busy database: try again next interval
                log.warning("could not record a heartbeat: %s", exc)

    thread = threading.Thread(target=loop, name="polylora-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


@contextlib.contextmanager
def ask_lock(storage_url: Any, study: str = "") -> Iterator[None]:
    """Exclusive while counting and asking trials of ``study``, for every worker of any
    database: a file lock beside a sqlite study, a database lock on a server database
    (``polylora.record.db_lock``); a no-op for an in-memory study."""
    if not isinstance(storage_url, str):
        yield
        return
    with db_lock.database_lock(storage_url, f"polylora-optuna-ask:{study}"):
        yield
