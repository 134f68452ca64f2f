"""Metric registry: every metric polylora reports, by name, with its function, inputs,
aggregation and direction.

Sweeps (Optuna ``direction``), statistics, reports and the evaluation suite read a metric from
here, so each fact about it is declared once. The builtin metrics are declared in
:mod:`polylora.metrics.builtin`; extensions add theirs with :func:`register_metric` (in code)
or ``eval.custom_metrics`` (config, see :mod:`polylora.metrics.custom`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

from polylora.errors import ConfigError
from polylora.metrics.builtin import BUILTIN_METRICS, pass_at_k_metric
from polylora.metrics.spec import (
    NEEDS_VOCABULARY,
    MetricSpec,
    function_inputs,
    mean_over_prompts,
)
from polylora.record.names import canonical_metric

__all__ = [
    "NEEDS_VOCABULARY", "MetricSpec", "add_metric", "canonical_name", "function_inputs",
    "get_metric", "is_proportion_metric", "list_metrics", "mean_over_prompts",
    "metric_direction", "register_metric", "registered_in_order",
]  # fmt: skip

_PASS_AT_K_RE = re.compile(r"^pass@([1-9][0-9]*)$")

F = TypeVar("F", bound=Callable[..., Any])

_REGISTRY: dict[str, MetricSpec] = {}


def add_metric(spec: MetricSpec) -> MetricSpec:
    """Register ``spec``; re-registering an identical spec is a no-op, a different one (or a
    different function under the same name) an error."""
    existing = _REGISTRY.get(spec.name)
    if existing is not None:
        same_fn = spec.compute is None or spec.compute is existing.compute
        if existing != spec or not same_fn:
            raise ValueError(f"metric {spec.name!r} is already registered with a different spec")
        return existing
    _REGISTRY[spec.name] = spec
    return spec


def register_metric(
    name: str,
    *,
    higher_is_better: bool,
    needs: Iterable[str],
    description: str,
    proportion: bool = False,
    aggregate: Callable[[Sequence[float]], float] = mean_over_prompts,
) -> Callable[[F], F]:
    """Decorator registering the decorated function as the metric ``name`` (the suite calls it
    once per prompt with the ``PromptInputs`` fields it names); returns it unchanged."""

    def decorator(fn: F) -> F:
        add_metric(
            MetricSpec(
                name, higher_is_better, frozenset(needs), description, compute=fn,
                aggregate=aggregate, proportion=proportion,
            )
        )  # fmt: skip
        return fn

    return decorator


#: The one metric-name normalizer lives with the run record's names.
canonical_name = canonical_metric


def get_metric(name: str) -> MetricSpec:
    """The spec for ``name`` (with or without an ``eval/`` prefix); any ``pass@<k>`` is valid."""
    key = canonical_name(name)
    spec = _REGISTRY.get(key)
    if spec is not None:
        return spec
    match = _PASS_AT_K_RE.match(key)
    if match:
        return pass_at_k_metric(int(match.group(1)))
    if key.startswith(("field_acc/", "rule/")) and len(key.split("/", 1)[1]) > 0:
        return MetricSpec(
            key, True, frozenset({"samples", "checker"}),
            "a checker detail averaged over prompts (per-field accuracy, heuristic rule)",
        )  # fmt: skip
    raise ConfigError(
        f"unknown metric {name!r}; known metrics: {', '.join(list_metrics())} "
        "(pass@<k> works for any k ≥ 1)"
    )


def list_metrics() -> list[str]:
    """Names of all registered metrics, sorted."""
    return sorted(_REGISTRY)


def registered_in_order() -> list[MetricSpec]:
    """Every registered metric in registration order (the suite's fixed batching order)."""
    return list(_REGISTRY.values())


def metric_direction(name: str) -> Literal["maximize", "minimize"]:
    """Optuna direction for ``name`` (``"eval/loss"`` → ``"minimize"``)."""
    return "maximize" if get_metric(name).higher_is_better else "minimize"


def is_proportion_metric(name: str) -> bool:
    """True for metrics whose aggregate gets a normal-approximation margin of error."""
    try:
        return get_metric(name).proportion
    except ConfigError:
        return False


for _spec in BUILTIN_METRICS:  # declared once, there, so directions never depend on import order
    add_metric(_spec)
