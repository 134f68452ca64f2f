"""Everything a job checks before any model loads or any MLflow run starts: the config, the
metric names, the data and its splits, the objective and the prompt format."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from polylora.config import build
from polylora.data.checking import Checker
from polylora.data.example import Example
from polylora.data.formatting import PromptFormat
from polylora.data.splits import Splits, split_examples
from polylora.errors import ConfigError, DataError
from polylora.metrics.checkers import checker_from_config
from polylora.metrics.custom import register_custom_metrics
from polylora.metrics.selection import (
    check_optimized_metrics,
    fit_eval_metrics,
    metrics_named_on_command_line,
)
from polylora.objectives.base import Objective
from polylora.record import names
from polylora.record.names import VALIDATION_LOSS, canonical_metric, metric_split, optimized_metrics
from polylora.train.config_checks import validate

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """Everything checked before any model loads or any MLflow run starts."""

    objective: Objective
    examples: list[Example]
    splits: Splits
    checker: Checker | None
    #: eval.metrics as run: without a checker, the checker metrics the eval group listed are
    #: left out (named in ``left_out``) rather than failing the run.
    eval_metrics: list[str] | None = None
    left_out: tuple[str, ...] = ()
    #: How the data source's checker reads an answer (its ``normalize`` hook), so that
    #: diversity counts "Apple." and "apple" as one answer; None: answers as written.
    normalize: Callable[[str], str] | None = None


def check_swapped_objective(cfg: DictConfig) -> None:
    """A setting left in ``objective`` that the chosen objective does not take (an experiment
    written for another objective, then ``objective=...``) is one ConfigError with the fix."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_class

    from polylora.config.targets import is_trusted, trusted_target_patterns
    from polylora.objectives.settings import check_objective_settings

    target = cfg.objective.get("_target_")
    if not isinstance(target, str) or not is_trusted(target, trusted_target_patterns()):
        return  # build() refuses it with its own message
    try:
        cls = get_class(target)
    except Exception:  # an unknown target: build() says which
        return
    chosen, command_line = getattr(cls, "name", target), []
    if HydraConfig.initialized():
        hydra = HydraConfig.get()
        chosen = hydra.runtime.choices.get("objective", chosen)
        command_line = list(hydra.overrides.task)
    check_objective_settings(cfg.objective, cls, chosen, cfg.get("experiment"), command_line)


def prepare(cfg: DictConfig) -> Prepared:
    """Validate the config and data; build the objective. Raises PolyloraError on bad input."""
    validate(cfg)  # every group, optimized_metric's names included: one ConfigError
    custom = register_custom_metrics(cfg.eval.get("custom_metrics"))
    check_swapped_objective(cfg)
    objective = build(cfg.objective, _convert_="all")
    _set_code_execution_policy(cfg)
    checker = checker_from_config(cfg.data.checker, cfg.eval.allow_code_execution)
    objective.check_data(has_checker=checker is not None)  # the one data check of the run
    optimized = [n for n in optimized_metrics(cfg.optimized_metric)
                 if not n.startswith(names.TRAIN_PREFIX)]
    check_optimized_metrics(
        [canonical_metric(n) for n in optimized],
        has_checker=checker is not None,
        data_name=cfg.data.name,
    )
    source = build(cfg.data.source)
    examples = source.load()
    if cfg.data.partition_by:
        examples = partition(examples, cfg.data.partition_by, cfg.data.partition_value)
    sp = cfg.data.split
    splits = split_examples(
        examples,
        train=sp.train,
        val=sp.val,
        test=sp.test,
        seed=sp.seed,
        stratify_by=sp.stratify_by,
        group_by=sp.group_by,
        **({"n_bins": sp.n_bins} if sp.stratify_by else {}),
    )
    listed = list(cfg.eval.metrics)
    eval_metrics = listed + [n for n in custom if n not in listed]
    left_out: list[str] = []
    if cfg.eval.enabled:
        eval_metrics, left_out = fit_eval_metrics(
            eval_metrics,
            has_checker=checker is not None,
            explicit=metrics_named_on_command_line(),
            data_name=cfg.data.name,
        )
    if cfg.train.enabled and not splits.train:
        raise DataError(f"the training split is empty ({len(examples)} examples in all)")
    if cfg.eval.enabled and not splits.test:
        raise DataError("the test split is empty; raise data.split.test or add examples")
    if validation_metrics(cfg) and not splits.val:  # eval.enabled: checked by validate
        raise ConfigError(
            f"optimized_metric names {', '.join(validation_metrics(cfg))}, scored on the "
            "validation split, but the validation split is empty (raise data.split.val)"
        )
    return Prepared(
        objective=objective,
        examples=examples,
        splits=splits,
        checker=checker,
        eval_metrics=eval_metrics,
        left_out=tuple(left_out),
        normalize=getattr(source, "normalize", None),
    )


def validation_metrics(cfg: DictConfig) -> list[str]:
    """The ``val/<metric>`` names of ``optimized_metric`` that need the validation eval subset
    (the validation loss needs none: it is the early-stopping curve)."""
    return [n for n in optimized_metrics(cfg.optimized_metric)
            if metric_split(n) == "validation" and n not in VALIDATION_LOSS]


def _set_code_execution_policy(cfg: DictConfig) -> None:
    """``eval.code_execution.unsafe_ok`` → the sandbox's process-wide policy (warned)."""
    from polylora.metrics import sandbox

    unsafe_ok = bool(OmegaConf.select(cfg, "eval.code_execution.unsafe_ok", default=False))
    if unsafe_ok:
        log.warning(
            "eval.code_execution.unsafe_ok=true: where the jail cannot be built, model-written "
            "code runs WITHOUT it"
        )
    sandbox.allow_unsafe(unsafe_ok)


def partition(examples: list[Example], field: str, value: Any) -> list[Example]:
    """The examples whose ``field`` (or group) equals ``value`` (one per-cluster adapter)."""
    if value is None:  # not in validate: an experiment may leave the value to the command line
        raise ConfigError(
            f"data.partition_by={field} needs data.partition_value=<value> (a multirun over "
            "the values trains one adapter each)"
        )

    def get(e: Example) -> Any:
        if field == "group":
            return e.group
        if field not in e.fields:
            raise DataError(
                f"data.partition_by={field!r}: example {e.id!r} has no such field "
                f"(fields: {', '.join(sorted(e.fields)) or 'none'})"
            )
        return e.fields[field]

    chosen = [e for e in examples if str(get(e)) == str(value)]
    if not chosen:
        raise DataError(f"no example has {field}={value!r}")
    return chosen


def prompt_format(cfg: DictConfig, train_examples: list[Example]) -> PromptFormat:
    """The prompt format, with ``data.few_shot`` training examples as demonstrations."""
    shots = tuple(sorted(train_examples, key=lambda e: e.id)[: cfg.data.few_shot])
    return PromptFormat(
        style=cfg.data.prompt_format, system_prompt=cfg.data.system_prompt, shots=shots
    )
