"""Metrics: one implementation per metric, registered by name with its direction.

Modules: ``registry`` (names, directions), ``passk``, ``diversity``, ``quality``,
``embeddings`` (offline MiniLM), ``checkers``, ``code_exec`` (sandboxed HumanEval) and
``suite`` (scores generations for the evaluation pipeline). Heavy libraries (torch,
sentence-transformers, bert-score) load only when a metric that needs them runs.
"""

from polylora.metrics.registry import (
    MetricSpec,
    get_metric,
    list_metrics,
    metric_direction,
    register_metric,
)

__all__ = ["MetricSpec", "get_metric", "list_metrics", "metric_direction", "register_metric"]
