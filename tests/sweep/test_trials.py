"""Trial bookkeeping on Optuna's RDB heartbeat: a trial whose sweeper stops beating is failed
and retried with the same parameters; a trial that keeps beating is left alone; retried
failures do not count towards ``n_trials``. A real sqlite study, real time (a few seconds)."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
from optuna.trial import TrialState

from polylora.sweep import trials


def _study(tmp_path: Path, retry: trials.RetryStaleTrial, grace_period: int = 2) -> optuna.Study:
    url = f"sqlite:///{tmp_path}/optuna.db"
    storage = trials.open_storage(url, heartbeat_interval=1, grace_period=grace_period,
                                  retry=retry)
    return optuna.create_study(study_name="s", storage=storage)


def test_a_silent_trial_is_failed_and_retried_with_its_parameters(tmp_path: Path) -> None:
    retry = trials.RetryStaleTrial(max_retry=3)
    study = _study(tmp_path, retry, grace_period=1)
    (first,) = trials.ask(study, 1)
    lr = first.suggest_float("lr", 1e-5, 1e-3, log=True)
    assert trials.taken(study) == 1
    time.sleep(2.0)  # no heartbeat for twice the grace_period (1 s)
    trials.fail_stale(study)
    assert retry.take_stale() == [0]
    assert retry.take_stale() == []
    states = [t.state for t in study.get_trials()]
    assert states == [TrialState.FAIL, TrialState.WAITING]
    assert trials.taken(study) == 0  # the failure is retried; the retry is asked first
    (again,) = trials.ask(study, 1)
    assert again.number == 1 and again.suggest_float("lr", 1e-5, 1e-3, log=True) == lr
    study.tell(again, 1.0)
    assert trials.taken(study) == 1


def test_a_beating_trial_is_left_running(tmp_path: Path) -> None:
    retry = trials.RetryStaleTrial(max_retry=3)
    study = _study(tmp_path, retry)
    (trial,) = trials.ask(study, 1)
    with trials.heartbeat(study, [trial]):
        time.sleep(3.5)
        trials.fail_stale(study)
    assert retry.take_stale() == []
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING]


def test_retries_stop_after_max_retry(tmp_path: Path) -> None:
    retry = trials.RetryStaleTrial(max_retry=0)
    study = _study(tmp_path, retry, grace_period=1)
    trials.ask(study, 1)
    time.sleep(2.0)
    trials.fail_stale(study)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL]
    assert trials.taken(study) == 1  # not retried: it counts


def test_storage_without_a_url_is_left_as_is(tmp_path: Path) -> None:
    retry = trials.RetryStaleTrial(max_retry=1)
    assert trials.open_storage(None, 30, None, retry) is None
    study = optuna.create_study()
    assert not trials.has_heartbeat(study)
    with trials.ask_lock(None), trials.heartbeat(study, trials.ask(study, 1)):
        pass
    assert trials.taken(study) == 1
