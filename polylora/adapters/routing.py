"""Sparse top-k routing (a sparse mixture-of-experts merge): each prompt is answered by the
``k`` adapters whose cluster centroid is nearest to its MiniLM embedding, combined with
similarity weights as ``Σ wᵢ·ΔWᵢ``. There is no single adapter: the mixture is evaluated by
a pipeline run (:func:`polylora.run.sparse.evaluate_sparse`, given the mixture by
:class:`SparseRouter`) whose evaluation loop activates each prompt's combination through a
hook."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from omegaconf import DictConfig

from polylora.adapters.sources import AdapterSource, load_sources, partition_cluster_id
from polylora.errors import ConfigError, DataError

if TYPE_CHECKING:
    from polylora.evaluate.given import GivenModel
    from polylora.train.preparation import Prepared

WEIGHTINGS: tuple[str, ...] = ("similarity", "softmax")
#: Routing weights are rounded to this many decimals so prompts with (almost) the same
#: combination share one batch; the rounded weights are what is applied.
ROUTE_DECIMALS = 2

@dataclass(frozen=True)
class Route:
    """Which adapters answer one prompt (best first) and their weights (summing to 1)."""

    indices: tuple[int, ...]
    weights: tuple[float, ...]
    similarities: tuple[float, ...] = field(default=(), compare=False)

    @property
    def key(self) -> tuple[tuple[int, ...], tuple[float, ...]]:
        """Prompts with the same key are generated together with one combination."""
        return (self.indices, self.weights)


def load_centroids(path: str | Path, n_adapters: int, cluster_ids: Sequence[int] | None) -> Any:
    """Centroid rows for the adapters, in adapter order, from a ``.npy`` of shape (k, d).

    ``cluster_ids`` names the centroid row of each adapter (default: row i for adapter i).
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(
            f"--centroids {str(path)!r} not found; sparse_topk needs the cluster centroids "
            "(`polylora cluster` writes them next to its output)"
        )
    try:
        centroids = np.load(file, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"--centroids {file} is not a .npy array: {exc}") from None
    if centroids.ndim != 2 or not np.isfinite(centroids).all():
        raise DataError(
            f"--centroids {file} must be a finite 2-D array (clusters × dim), got shape "
            f"{centroids.shape}"
        )
    if cluster_ids is None:
        if len(centroids) != n_adapters:
            raise ConfigError(
                f"--centroids has {len(centroids)} rows for {n_adapters} adapters; give one "
                "adapter per cluster in cluster-id order, or name each adapter's cluster with "
                "--cluster-ids"
            )
        return centroids.astype(np.float64)
    if len(cluster_ids) != n_adapters:
        raise ConfigError(
            f"--cluster-ids has {len(cluster_ids)} value(s) for {n_adapters} adapter(s)"
        )
    bad = [c for c in cluster_ids if not 0 <= c < len(centroids)]
    if bad:
        raise ConfigError(
            f"--cluster-ids {bad} out of range: the centroids file has clusters "
            f"0..{len(centroids) - 1}"
        )
    return centroids[list(cluster_ids)].astype(np.float64)


def route_prompts(
    vectors: Any,
    centroids: Any,
    k: int,
    weighting: str = "similarity",
    temperature: float = 0.1,
    decimals: int | None = ROUTE_DECIMALS,
) -> list[Route]:
    """Top-k adapters per prompt by cosine similarity of its embedding to the centroids.

    ``weighting="similarity"``: weights ∝ max(similarity, 0) (uniform if all are ≤ 0);
    ``"softmax"``: softmax(similarity / temperature). Weights are rounded to ``decimals``
    and renormalized so near-identical combinations share a batch.
    """
    vecs = _unit_rows(np.asarray(vectors, dtype=np.float64))
    cents = _unit_rows(np.asarray(centroids, dtype=np.float64))
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(cents):
        raise ConfigError(
            f"--k {k} must be between 1 and the number of adapters ({len(cents)}); "
            "lower --k or add adapters"
        )
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"--weighting {weighting!r} is unknown; use one of {WEIGHTINGS}")
    if vecs.ndim != 2 or vecs.shape[1] != cents.shape[1]:
        raise DataError(
            f"prompt embeddings have shape {vecs.shape} but the centroids have dimension "
            f"{cents.shape[1]}; make the centroids with the same embedder (MiniLM)"
        )
    sims = vecs @ cents.T
    routes = []
    for row in sims:
        order = sorted(range(len(row)), key=lambda j: (-row[j], j))[:k]
        top = np.array([row[j] for j in order])
        if weighting == "softmax":
            raw = np.exp((top - top.max()) / temperature)
        else:
            raw = np.clip(top, 0.0, None)
            if raw.sum() <= 0:
                raw = np.ones_like(top)
        weights = raw / raw.sum()
        if decimals is not None:
            weights = np.round(weights, decimals)
            weights = weights / weights.sum() if weights.sum() > 0 else np.full(k, 1.0 / k)
        routes.append(
            Route(
                indices=tuple(order),
                weights=tuple(float(w) for w in weights),
                similarities=tuple(float(s) for s in top),
            )
        )
    return routes


def _unit_rows(matrix: Any) -> Any:
    if matrix.ndim != 2:
        return matrix
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


class RoutedAdapters:
    """A base model with every adapter attached; :meth:`apply` activates one route's mix.

    The route's adapters are all active at once with their LoRA scaling multiplied by their
    weights, so each layer computes ``W x + Σ wᵢ·ΔWᵢ x`` exactly (no merged copy is built;
    switching routes costs nothing). Generate with :attr:`module`.
    """

    def __init__(self, peft_model: Any, names: Sequence[str]) -> None:
        from peft.tuners.lora import LoraLayer

        self.peft_model = peft_model
        self.names = list(names)
        self.layers = [m for m in peft_model.modules() if isinstance(m, LoraLayer)]
        self.current: Route | None = None

    @property
    def module(self) -> Any:
        """The underlying transformers model (LoRA layers injected): use it for generate."""
        return self.peft_model.get_base_model()

    def apply(self, route: Route) -> None:
        """Activate ``route``'s adapters with their weights (others off)."""
        active = [self.names[i] for i in route.indices]
        self.peft_model.base_model.set_adapter(active, inference_mode=True)
        for layer in self.layers:
            for name in self.names:
                layer.set_scale(name, 1.0)
            for i, weight in zip(route.indices, route.weights, strict=True):
                layer.set_scale(self.names[i], weight)
        self.current = route


@dataclass
class RouteHook:
    """The evaluation loop's adapter hook (:class:`~polylora.evaluate.evaluation.AdapterHook`) for a
    routed mixture: prompts with the same route run together, under that route's combination,
    in first-seen order."""

    routed: RoutedAdapters
    routes: dict[str, Route]

    def groups(self, examples: Sequence[Any]) -> Iterator[tuple[list[int], Any]]:
        """(indices of the prompts sharing a route, the model with that route active)."""
        grouped: dict[Any, list[int]] = {}
        for i, e in enumerate(examples):
            grouped.setdefault(self.routes[e.id].key, []).append(i)
        for idx in grouped.values():
            self.routed.apply(self.routes[examples[idx[0]].id])
            yield idx, self.routed.module


def prompt_text(example: Any) -> str:
    """The text a prompt is routed by: the prompt, or the user turns of a chat prompt."""
    if isinstance(example.prompt, str):
        return example.prompt
    return "\n".join(m.get("content", "") for m in example.prompt if m.get("role") == "user")


@dataclass
class SparseRouter:
    """Builds the routed mixture a sparse top-k run evaluates (the pipeline's
    :class:`~polylora.run.pipeline.ModelBuilder`): the base model with every adapter attached, each
    test (and validation) prompt routed to its top-k adapters, and each adapter's share of the
    routing weight over the test subset as ``merge/route_share/<i>``."""

    sources: Sequence[AdapterSource]
    centroids: Any
    k: int
    weighting: str = "similarity"
    temperature: float = 0.1
    embedder: Any = None
    routes: dict[str, Route] = field(default_factory=dict)

    def __call__(self, cfg: DictConfig, prep: Prepared) -> GivenModel:
        """The routed mixture, ``prep``'s test and validation prompts routed."""
        from polylora.data.embeddings import encode_unique
        from polylora.evaluate.evaluation import eval_subset
        from polylora.evaluate.given import GivenModel
        from polylora.model.loading import load_base_model
        from polylora.record import names

        model, tok = load_base_model(cfg.model, cfg.hardware)
        peft_model, adapter_names = load_sources(model, self.sources)
        routed = RoutedAdapters(peft_model, adapter_names)
        subset = eval_subset(prep.splits.test, cfg.eval.subset_size)
        to_route = list({e.id: e for e in [*subset, *prep.splits.val]}.values())
        vectors = encode_unique([prompt_text(e) for e in to_route], self.embedder)
        chosen = route_prompts(vectors, self.centroids, self.k, self.weighting, self.temperature)
        self.routes = dict(zip([e.id for e in to_route], chosen, strict=True))
        share = np.zeros(len(self.sources))
        for e in subset:
            route = self.routes[e.id]
            for i, w in zip(route.indices, route.weights, strict=True):
                share[i] += w / len(subset)
        return GivenModel(
            routed.module, tok, adapter=RouteHook(routed, self.routes),
            row_fields=self.route_fields,
            metrics={f"{names.ROUTE_SHARE_PREFIX}{i}": float(v) for i, v in enumerate(share)},
        )

    def route_fields(self, prompt_id: str) -> dict[str, Any]:
        """The ``route`` field of a prompt's ``generations.jsonl`` row."""
        route = self.routes[prompt_id]
        refs = [s.ref for s in self.sources]
        return {"route": {
            "adapters": [refs[j] for j in route.indices],
            "indices": list(route.indices),
            "weights": list(route.weights),
            "similarities": list(route.similarities),
        }}


def resolve_cluster_ids(sources: Sequence[AdapterSource], text: str | None) -> list[int] | None:
    """Each adapter's centroid row: ``--cluster-ids`` when given, else the per-cluster runs'
    integer partition values (all distinct), else None (row i for adapter i)."""
    if text is not None:
        try:
            return [int(p) for p in text.split(",")]
        except ValueError:
            raise ConfigError(f"--cluster-ids {text!r} must be comma-separated integers") from None
    inferred = [partition_cluster_id(s) for s in sources]
    if all(i is not None for i in inferred) and len(set(inferred)) == len(inferred):
        return [int(i) for i in inferred if i is not None]
    return None
