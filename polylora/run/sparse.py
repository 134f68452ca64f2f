"""A sparse top-k routed mixture of adapters evaluated as one pipeline run: the router
(:class:`polylora.adapters.routing.SparseRouter`) builds the model, the pipeline records it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from polylora.adapters.merging import check_compatible
from polylora.adapters.routing import Route, SparseRouter
from polylora.adapters.sources import AdapterSource
from polylora.errors import ConfigError
from polylora.record import writer
from polylora.run.pipeline import execute


@dataclass
class SparseResult:
    """What a sparse top-k evaluation produced."""

    metrics: dict[str, float]
    run_id: str
    routes: dict[str, Route]
    output_dir: Path


def evaluate_sparse(
    cfg: DictConfig,
    sources: Sequence[AdapterSource],
    centroids: Any,
    k: int,
    weighting: str = "similarity",
    temperature: float = 0.1,
    embedder: Any = None,
    extra_tags: dict[str, str] | None = None,
) -> SparseResult:
    """Route each test (and validation) prompt to its top-k adapters and evaluate the mixture
    as a pipeline run (:func:`polylora.run.pipeline.execute` with a :class:`SparseRouter`),
    recorded with the pipeline's names (``eval/...``, ``data/...``) plus each adapter's share
    of the routing weight.

    ``cfg`` is a composed polylora config (the data/eval/model the adapters are scored on,
    ``train.enabled=false``); ``embedder`` defaults to the shared MiniLM.
    """
    check_compatible(sources, "sparse_topk", cfg.model)
    if not cfg.eval.enabled:
        raise ConfigError("sparse_topk is evaluated through eval.*; do not set eval.enabled=false")
    router = SparseRouter(sources, centroids, k, weighting, temperature, embedder)
    tags = {**writer.merge_tags("sparse_topk", [s.ref for s in sources], k=k,
                                weighting=weighting), **(extra_tags or {})}
    done = execute(cfg, given=router, tags=tags)
    return SparseResult(metrics=done.metrics, run_id=done.run_id, routes=router.routes,
                        output_dir=done.output_dir)
