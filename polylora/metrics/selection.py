"""Which evaluation metrics a run computes, given whether its data has a task checker.

Metrics that need a checker (accuracy, sample_accuracy, pass@k) are left out, with one log
line naming them and how to get them, when the eval group lists them for data without one; a
user who names them on the command line (``eval.metrics=[...]``) or optimizes one gets a
ConfigError before training instead.
"""

from __future__ import annotations

import logging

from polylora.errors import ConfigError
from polylora.metrics.registry import get_metric

log = logging.getLogger(__name__)


CHECKER_HINT = (
    "pick a checker: checker=heuristic (open-ended replies), fields (structured answers), "
    "words or humaneval (docs/own_data.md)"
)


def fit_eval_metrics(
    names: list[str], has_checker: bool, explicit: bool, data_name: str = "this data"
) -> tuple[list[str], list[str]]:
    """(metrics to compute, metrics left out). Unknown names fail. Without a checker, the
    metrics that need one are left out with one log line, unless the user named
    ``eval.metrics`` on the command line: then it is an error before training."""
    from polylora.metrics.suite import resolve_metric_names

    resolved = resolve_metric_names(names)  # unknown names → ConfigError
    needs = [n for n in resolved if "checker" in get_metric(n).needs]
    if not needs or has_checker:
        return names, []
    if explicit:
        raise ConfigError(
            f"eval.metrics has {', '.join(needs)}, which need a task checker, and data "
            f"{data_name!r} has none; {CHECKER_HINT}, or drop them from eval.metrics"
        )
    kept = [n for n in resolved if n not in needs]
    log.warning(
        "eval: left out %s: they need a task checker and data %r has none; to get them, %s",
        ", ".join(needs), data_name, CHECKER_HINT,
    )
    return kept, needs


def metrics_named_on_command_line() -> bool:
    """True if this job's overrides set ``eval.metrics`` (False outside a Hydra job)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        overrides = HydraConfig.get().overrides.task
    except ValueError:  # composed in code (tests, notebooks): adapt like the defaults
        return False
    return any(o.split("=", 1)[0].lstrip("+~") == "eval.metrics" for o in overrides)


def check_optimized_metrics(names: list[str], has_checker: bool, data_name: str) -> None:
    """An optimized metric (registry name) that needs a checker, on data without one, fails
    before training rather than after it."""
    for name in names:
        if not has_checker and "checker" in get_metric(name).needs:
            raise ConfigError(
                f"optimized_metric={name} needs a task checker and data {data_name!r} "
                f"has none; {CHECKER_HINT}, or optimize eval/loss"
            )
