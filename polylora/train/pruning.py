"""Pruning a sweep trial from inside its training job, Optuna's way: every evaluation reports
the validation loss to the trial (``trial.report``), and when the study's pruner says so
(``trial.should_prune``) training stops and the job raises ``optuna.TrialPruned``.

The sweeper names the pruner (``hydra.sweeper.pruner``: ``median``, ``percentile``,
``successive_halving``, ``hyperband`` or a ``_target_`` node with settings) and the job finds
its trial through the study storage, the study name and the trial number that the sweeper
puts in the trial's ``tracking.tags``, so a trial reaches it in this process, a joblib worker
or a cluster job alike.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from transformers import TrainerCallback

from polylora.errors import ConfigError
from polylora.record.names import (
    PRUNED_STEP_TAG,
    STUDY_TAG,
    TRIAL_STATE_TAG,
    TRIAL_TAG,
    VALIDATION_LOSS,
)

__all__ = ["PRUNED_STATE", "PRUNED_STEP_TAG", "PRUNERS", "TRIAL_STATE_TAG", "PruningCallback",
           "TrialLink", "build_pruner", "check_prunable", "pruner_spec", "trial_link"]

log = logging.getLogger(__name__)

PRUNED_STATE = "PRUNED"  # the value of TRIAL_STATE_TAG on a pruned trial's run

#: Optuna's pruners by the short names ``hydra.sweeper.pruner`` accepts.
PRUNERS = {
    "none": "optuna.pruners.NopPruner",
    "median": "optuna.pruners.MedianPruner",
    "percentile": "optuna.pruners.PercentilePruner",
    "successive_halving": "optuna.pruners.SuccessiveHalvingPruner",
    "hyperband": "optuna.pruners.HyperbandPruner",
}


def pruner_spec(spec: Any) -> dict[str, Any] | None:
    """``hydra.sweeper.pruner`` as a ``_target_`` node: None (no pruning), a short name
    (``median``) or a node (``{_target_: optuna.pruners.MedianPruner, n_warmup_steps: 2}``)."""
    if spec is None:
        return None
    if isinstance(spec, DictConfig):
        spec = OmegaConf.to_container(spec, resolve=True)
    if isinstance(spec, str):
        if spec not in PRUNERS:
            raise ConfigError(f"hydra.sweeper.pruner={spec} is not a pruner; use one of "
                              f"{', '.join(PRUNERS)} or a _target_ node of optuna.pruners")
        return {"_target_": PRUNERS[spec]}
    if isinstance(spec, Mapping) and str(spec.get("_target_", "")).startswith("optuna.pruners."):
        return dict(spec)
    raise ConfigError(f"hydra.sweeper.pruner={spec!r}: expected a pruner name "
                      f"({', '.join(PRUNERS)}) or a node with _target_: optuna.pruners.<Class>")


def build_pruner(spec: Any) -> Any:
    """The Optuna pruner ``hydra.sweeper.pruner`` names (None: no pruning)."""
    node = pruner_spec(spec)
    if node is None:
        return None
    import importlib

    module, _, name = str(node.pop("_target_")).rpartition(".")
    cls = getattr(importlib.import_module(module), name, None)
    if cls is None:
        raise ConfigError(f"hydra.sweeper.pruner: optuna.pruners has no {name}")
    try:
        return cls(**node)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"hydra.sweeper.pruner ({name}): {exc}") from None


def check_prunable(metrics: list[str], storage: Any) -> None:
    """Refuse a pruner that cannot act: several objectives (Optuna prunes single-objective
    studies only), a metric not known during training, or a study only this process sees."""
    if len(metrics) != 1:
        raise ConfigError(f"hydra.sweeper.pruner is set but optimized_metric names "
                          f"{len(metrics)} metrics; Optuna prunes single-objective studies "
                          "only: drop the pruner (hydra/sweeper/pruner=none)")
    if metrics[0] not in VALIDATION_LOSS:
        raise ConfigError(f"hydra.sweeper.pruner is set but optimized_metric={metrics[0]} is "
                          "computed only after training; each evaluation during training "
                          "reports the validation loss: use optimized_metric=eval/loss, or "
                          "drop the pruner")
    if not (isinstance(storage, str) and "://" in storage):
        raise ConfigError("hydra.sweeper.pruner needs a database study storage that the trial "
                          "jobs can open (e.g. hydra.sweeper.storage=sqlite:///optuna.db)")


def intermediate_value(metric: str, eval_loss: float) -> float:
    """The value of ``optimized_metric`` at an evaluation: the loss or its perplexity."""
    import math

    return math.exp(min(eval_loss, 50.0)) if metric.endswith("perplexity") else eval_loss


@dataclass
class TrialLink:
    """Where a sweep trial's job finds its Optuna trial."""

    storage: str
    study: str
    number: int
    pruner: Any
    metric: str

    def open(self) -> Any:
        """The running ``optuna.Trial`` (loaded from the study storage)."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.load_study(study_name=self.study, storage=self.storage,
                                  pruner=self.pruner)
        for frozen in study.get_trials(deepcopy=False):
            if frozen.number == self.number:
                return optuna.Trial(study, frozen._trial_id)  # FrozenTrial: no public id
        raise ConfigError(f"trial {self.number} of study {self.study!r} is not in the storage")


def trial_link(cfg: DictConfig) -> TrialLink | None:
    """The trial this job runs for, when it runs under a sweep with a pruner; else None."""
    tags = cfg.tracking.get("tags") or {}
    number, study = tags.get(TRIAL_TAG), tags.get(STUDY_TAG)
    if number is None or study is None:
        return None
    try:
        from hydra.core.hydra_config import HydraConfig

        sweeper = HydraConfig.get().sweeper
    except ValueError:  # not a Hydra job
        return None
    spec = sweeper.get("pruner")
    if spec is None or sweeper.get("storage") is None:
        return None
    pruner = build_pruner(spec)
    metric = str(cfg.optimized_metric)
    return TrialLink(str(sweeper.storage), str(study), int(number), pruner, metric)


class PruningCallback(TrainerCallback):
    """Reports each evaluation's validation loss to the trial and stops training when the
    pruner says so (as ``EarlyStoppingCallback`` stops, with ``control.should_training_stop``);
    the job then raises ``optuna.TrialPruned``."""

    def __init__(self, trial: Any, metric: str) -> None:
        self.trial = trial
        self.metric = metric
        self.pruned_step: int | None = None
        self.last_value: float | None = None

    def on_evaluate(self, args: Any, state: Any, control: Any,
                    metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
        if not metrics or "eval_loss" not in metrics:
            return
        value = intermediate_value(self.metric, float(metrics["eval_loss"]))
        self.last_value = value
        self.trial.report(value, step=int(state.global_step))
        if self.trial.should_prune():
            self.pruned_step = int(state.global_step)
            control.should_training_stop = True
            control.should_save = False
            log.info("trial %d pruned at step %d (%s = %.4g)", self.trial.number,
                     state.global_step, self.metric, value)

    @property
    def pruned(self) -> bool:
        """Whether the pruner stopped this trial."""
        return self.pruned_step is not None

    def message(self) -> str:
        """Why the trial stopped, as one line."""
        return (f"trial {self.trial.number} pruned at step {self.pruned_step} "
                f"({self.metric} = {self.last_value:.4g})")
