"""The ``polylora_optuna`` Hydra sweeper: a thin subclass of hydra-optuna-sweeper's.

``python -m polylora -m +experiment=smoke +hparams_search=lr hydra.sweeper.n_trials=3``

What it adds to the stock Optuna sweeper (see ``docs/sweeps.md``):

* **resume to n_trials**: re-running the same command continues the sqlite study and runs only
  the trials still missing (the stock sweeper adds ``n_trials`` more each time); a trial whose
  sweeper died (no heartbeat, Optuna's RDB heartbeat) is marked FAIL and run again with the
  same parameters under a new trial number;
* **direction from the metric registry** when ``direction`` is not set (a metric of your own
  in ``eval.custom_metrics`` is registered first, with its declared direction);
* **fail fast**: an unknown ``optimized_metric`` or a search key the config lacks is one
  ``polylora: error:`` line before any trial starts; failing trials are recorded FAIL and the
  sweep goes on;
* **MLflow parent run** per study (reused on resume); each trial's run is its child, tagged
  ``polylora.trial`` and ``polylora.study``;
* **summary table** (``summary.csv`` + ``summary.md`` in the sweep dir, logged to the parent);
* **pruning** with Optuna's pruners (``hydra.sweeper.pruner``): each evaluation during
  training reports the validation loss to the trial (:mod:`polylora.train.pruning`); a pruned trial
  is PRUNED in Optuna and KILLED with a ``polylora.trial_state=PRUNED`` tag in MLflow.

Module imports stay light: Hydra imports every plugin module on each start (through the
shim ``hydra_plugins/polylora_sweeper``); the sweep loop, :mod:`polylora.sweep.sweeper`, is
imported when a sweep starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig

from polylora.sweep.gpus import register_resolvers


@dataclass
class MedianPrunerConf:
    """``hydra/sweeper/pruner=median``: stop a trial whose best value so far is worse than the
    median of earlier trials' values at the same step (Optuna's defaults)."""

    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class PercentilePrunerConf:
    """``hydra/sweeper/pruner=percentile``: as median, at another percentile (25: keep only
    trials in the best quarter)."""

    _target_: str = "optuna.pruners.PercentilePruner"
    percentile: float = 25.0
    n_startup_trials: int = 5
    n_warmup_steps: int = 0
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class SuccessiveHalvingPrunerConf:
    """``hydra/sweeper/pruner=successive_halving``: asynchronous successive halving (ASHA)."""

    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    min_resource: Any = "auto"
    reduction_factor: int = 4
    min_early_stopping_rate: int = 0
    bootstrap_count: int = 0


@dataclass
class HyperbandPrunerConf:
    """``hydra/sweeper/pruner=hyperband``: Hyperband over successive-halving brackets
    (``max_resource``: the steps a full trial trains; auto: the first finished trial's)."""

    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: int = 1
    max_resource: Any = "auto"
    reduction_factor: int = 3
    bootstrap_count: int = 0


@dataclass
class PolyloraOptunaSweeperConf(OptunaSweeperConf):
    """``hydra/sweeper=polylora_optuna``: the stock fields, polylora defaults, and extras."""

    # The stock sampler default, and no pruner unless hydra/sweeper/pruner=<name> picks one
    # (_self_ first, so that a chosen pruner's node replaces the null below).
    defaults: list[Any] = field(default_factory=lambda: ["_self_", {"sampler": "tpe"},
                                                         {"pruner": None}])
    _target_: str = "polylora.sweep.plugin.PolyloraOptunaSweeper"
    # null: from the metric registry (metric_direction(optimized_metric)); or
    # minimize | maximize | a list of them (one per metric of a list optimized_metric).
    direction: Any = None
    # Sqlite in the working directory: what makes a sweep resumable.
    storage: Any = "sqlite:///optuna.db"
    # null: "<experiment>-<hparams_search choice>".
    study_name: str | None = None
    n_trials: int = 20
    # Trials per batch. The sweeper waits for the whole batch (the slowest trial) before asking
    # for the next: see launchers/parallel_workers.sh for the workaround.
    n_jobs: int = 1
    # 1.0: a failing trial is recorded FAIL and the sweep goes on.
    max_failure_rate: float = 1.0
    # true: the study ends with n_trials trials, counting those from earlier runs of the same
    # command; false: the stock behaviour (each run adds n_trials).
    resume: bool = True
    # Optuna's RDB heartbeat: a RUNNING trial records one every heartbeat_interval seconds;
    # one silent for grace_period seconds (null: twice the interval) is marked FAIL and queued
    # again with the same parameters, at most max_retry times (null: no limit). 0: off.
    heartbeat_interval: int = 30
    grace_period: int | None = None
    max_retry: int | None = 3
    # Stop the sweep after this many failures in a row (0: never).
    max_consecutive_failures: int = 5
    # One MLflow parent run per study, trials as its children.
    parent_run: bool = True
    # summary.csv + summary.md in the sweep dir after every batch.
    summary: bool = True
    # Optuna's pruner (null: none): median, percentile, successive_halving, hyperband, or
    # hydra/sweeper/pruner=<name> with its settings (hydra.sweeper.pruner.n_warmup_steps=2).
    # Each evaluation during training reports the validation loss to the trial.
    pruner: Any = None


ConfigStore.instance().store(
    group="hydra/sweeper",
    name="polylora_optuna",
    node=PolyloraOptunaSweeperConf,
    provider="polylora",
)
for _name, _node in {"median": MedianPrunerConf, "percentile": PercentilePrunerConf,
                     "successive_halving": SuccessiveHalvingPrunerConf,
                     "hyperband": HyperbandPrunerConf}.items():
    ConfigStore.instance().store(group="hydra/sweeper/pruner", name=_name, node=_node,
                                 provider="polylora")

register_resolvers()


class PolyloraOptunaSweeper(OptunaSweeper):
    """Builds :class:`PolyloraOptunaSweeperImpl` instead of the stock implementation."""

    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: Any | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        custom_search_space: str | None,
        params: DictConfig | None,
        resume: bool = True,
        heartbeat_interval: int = 30,
        grace_period: int | None = None,
        max_retry: int | None = 3,
        max_consecutive_failures: int = 5,
        parent_run: bool = True,
        summary: bool = True,
        pruner: Any = None,
    ) -> None:
        from polylora.sweep.sweeper import PolyloraOptunaSweeperImpl

        sampler = instantiate(
            sampler,
            _execution_whitelist_=(
                "hydra_plugins.hydra_optuna_sweeper.*",
                "optuna.samplers.*",
            ),
        )
        self.sweeper = PolyloraOptunaSweeperImpl(
            sampler,
            direction,
            storage,
            study_name,
            n_trials,
            n_jobs,
            max_failure_rate,
            custom_search_space,
            params,
            resume=resume,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            max_retry=max_retry,
            max_consecutive_failures=max_consecutive_failures,
            parent_run=parent_run,
            summary=summary,
            pruner=pruner,
        )
