"""``polylora merge``: combine trained LoRA adapters of one base model, and evaluate the result.

Long module (~950 lines): sources, static merges, routing and their evaluation; to be split so
that routed mixtures go through the pipeline's one evaluation loop.

Two families:

* **Static merges** (``linear``, ``ties``, ``dare_linear``, ``dare_ties``, ``cat``) go through
  PEFT's ``add_weighted_adapter`` and produce one adapter, saved in PEFT format to ``--out``.
  ``cat`` is exact (the merged update is ``Σ wᵢ·ΔWᵢ``, rank = sum of ranks); ``linear`` mixes
  the A and B factors separately (rank kept, needs equal ranks; exact only when one weight is
  non-zero); ``ties``/``dare_*`` prune with ``--density`` first.
* **Sparse top-k routing** (``sparse_topk``, a sparse mixture-of-experts merge): for each prompt the
  ``k`` adapters whose cluster centroid (``--centroids``, from ``polylora cluster``) is nearest
  to the prompt's MiniLM embedding are combined, weighted by similarity, and the answer is
  generated with that prompt-specific combination ``Σ wᵢ·ΔWᵢ``. There is no single adapter, so
  it is evaluated here and logged as an MLflow run with the pipeline's metric names.

``--evaluate "<hydra overrides>"`` scores the result with the normal evaluation suite so merged,
per-cluster and unified runs sit in one MLflow table (tag ``polylora.merge=<method>``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from polylora import redaction
from polylora.errors import ConfigError, DataError, PolyloraError

log = logging.getLogger(__name__)

PEFT_METHODS: tuple[str, ...] = ("linear", "ties", "dare_linear", "dare_ties", "cat")
METHODS: tuple[str, ...] = (*PEFT_METHODS, "sparse_topk")
#: PEFT combines these factor-wise, so every adapter must have the same rank.
EQUAL_RANK_METHODS: frozenset[str] = frozenset({"linear", "ties", "dare_linear", "dare_ties"})
DENSITY_METHODS: frozenset[str] = frozenset({"ties", "dare_linear", "dare_ties"})
WEIGHTINGS: tuple[str, ...] = ("similarity", "softmax")
#: Routing weights are rounded to this many decimals so prompts with (almost) the same
#: combination share one batch; the rounded weights are what is applied.
ROUTE_DECIMALS = 2
MERGED_NAME = "default"  # saved at the root of --out (PEFT puts other names in subfolders)
MERGE_INFO_FILE = "polylora_merge.json"
CONF_DIR = Path(__file__).resolve().parent / "conf"

# Fields of the `model` config that identify a base model's weights (tiny_random builds them
# from the architecture and init seed; the others load name/path).
_BASE_KEYS = (
    "source",
    "path",
    "hidden_size",
    "intermediate_size",
    "num_layers",
    "num_heads",
    "num_kv_heads",
    "init_seed",
)


# --- adapters and their base models -----------------------------------------------------------


@dataclass
class AdapterSource:
    """One adapter to merge: where it came from, its PEFT config and its run's config."""

    ref: str
    path: Path
    adapter_config: dict[str, Any]
    run_config: dict[str, Any] | None = None

    @property
    def rank(self) -> int:
        """The adapter's LoRA rank (the largest, with a rank pattern)."""
        ranks = [int(self.adapter_config.get("r", 0))]
        ranks += [int(v) for v in (self.adapter_config.get("rank_pattern") or {}).values()]
        return max(ranks)

    def base_identity(self) -> dict[str, Any] | None:
        """What identifies the base model this adapter was trained on, when recorded."""
        model = (self.run_config or {}).get("model")
        if isinstance(model, dict):
            return model_identity(model)
        name = self.adapter_config.get("base_model_name_or_path")
        return {"base_model_name_or_path": name} if name else None


def model_identity(model_cfg: Any) -> dict[str, Any]:
    """The base-model fields of a ``model`` config that must agree between adapters."""
    if isinstance(model_cfg, DictConfig):
        model_cfg = OmegaConf.to_container(model_cfg, resolve=True)
    source = model_cfg.get("source")
    keys = _BASE_KEYS if source == "tiny_random" else ("source", "path")
    identity = {key: model_cfg.get(key) for key in keys}
    if source == "smollm2_gguf":
        identity["path"] = "SmolLM2-135M-Instruct"
    return identity


def _run_config(ref: str, path: Path) -> dict[str, Any] | None:
    """The resolved config of the run that trained the adapter, if it can be found.

    A pipeline run writes ``<output_dir>/config.yaml`` next to ``<output_dir>/adapter`` and
    logs it as an artifact, so ``runs:/<id>/adapter`` has ``runs:/<id>/config.yaml``.
    """
    import yaml

    candidate = path.parent / "config.yaml"
    if not candidate.is_file() and ref.startswith("runs:/"):
        run_id = ref[len("runs:/") :].split("/", 1)[0]
        try:
            import mlflow

            candidate = Path(
                mlflow.artifacts.download_artifacts(artifact_uri=f"runs:/{run_id}/config.yaml")
            )
        except Exception:  # no config artifact: the base is then checked by loading only
            return None
    if not candidate.is_file():
        return None
    try:
        loaded = yaml.safe_load(candidate.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return None
    return loaded if isinstance(loaded, dict) else None


def resolve_sources(refs: Sequence[str]) -> list[AdapterSource]:
    """Resolve adapter folders / ``runs:/<id>/adapter`` URIs and read their configs."""
    from polylora.models import resolve_adapter

    sources = []
    for ref in refs:
        path = resolve_adapter(ref)
        config_file = path / "adapter_config.json"
        try:
            adapter_config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise DataError(f"cannot read {config_file}: {exc}") from None
        if adapter_config.get("peft_type", "LORA") != "LORA":
            raise ConfigError(
                f"adapter {ref!r} is a {adapter_config.get('peft_type')} adapter; "
                "polylora merge combines LoRA adapters only"
            )
        sources.append(AdapterSource(ref, path, adapter_config, _run_config(ref, path)))
    return sources


def check_compatible(
    sources: Sequence[AdapterSource], method: str, base_model_cfg: Any | None = None
) -> None:
    """Raise ConfigError unless the adapters can be combined with ``method`` on one base model.

    Checks the recorded base models agree (with each other and with ``base_model_cfg`` when
    given) and, for the factor-wise methods, that all ranks are equal.
    """
    if method not in METHODS:
        raise ConfigError(f"--method {method!r} is unknown; use one of {', '.join(METHODS)}")
    known = [(s.ref, s.base_identity()) for s in sources]
    known = [(ref, ident) for ref, ident in known if ident is not None]
    if base_model_cfg is not None:
        known.insert(0, ("the base model (--base/--evaluate)", model_identity(base_model_cfg)))
    # Compare what both sides recorded (a run's model config, or PEFT's base model name);
    # adapters recording neither are checked by loading them (shapes must fit).
    for i, (first_ref, first) in enumerate(known):
        for ref, ident in known[i + 1 :]:
            diff = sorted(k for k in set(first) & set(ident) if first[k] != ident[k])
            if diff:
                detail = ", ".join(f"{k}: {first[k]!r} vs {ident[k]!r}" for k in diff)
                raise ConfigError(
                    f"adapters come from different base models: {first_ref} and {ref} differ "
                    f"in {detail}; merge only adapters trained on the same base model"
                )
    if method in EQUAL_RANK_METHODS:
        ranks = {s.ref: s.rank for s in sources}
        if len(set(ranks.values())) > 1:
            listed = ", ".join(f"{ref} (r={r})" for ref, r in ranks.items())
            raise ConfigError(
                f"--method {method} needs adapters of equal LoRA rank, got {listed}; "
                "use --method cat (or sparse_topk), which accepts different ranks"
            )


def parse_weights(text: str | None, n: int) -> list[float]:
    """``"0.7,0.3"`` → ``[0.7, 0.3]``; one finite weight per adapter; default ``1/n`` each."""
    if text is None:
        return [1.0 / n] * n
    parts = [p.strip() for p in text.split(",")]
    try:
        weights = [float(p) for p in parts]
    except ValueError:
        raise ConfigError(
            f"--weights {text!r} is not a comma-separated list of numbers, e.g. 0.5,0.5"
        ) from None
    if len(weights) != n:
        raise ConfigError(
            f"--weights has {len(weights)} value(s) for {n} adapter(s); give one weight per "
            "adapter, in the same order"
        )
    if not all(math.isfinite(w) for w in weights):
        raise ConfigError(f"--weights must be finite numbers, got {text!r}")
    return weights


def load_sources(model: Any, sources: Sequence[AdapterSource]) -> tuple[Any, list[str]]:
    """Attach every adapter to ``model`` (frozen) as ``src0``, ``src1``…; returns the PeftModel."""
    from peft import PeftModel

    names = [f"src{i}" for i in range(len(sources))]
    peft_model: Any = model
    for i, (name, source) in enumerate(zip(names, sources, strict=True)):
        try:
            if i == 0:
                peft_model = PeftModel.from_pretrained(
                    model, source.path, adapter_name=name, is_trainable=False
                )
            else:
                peft_model.load_adapter(source.path, adapter_name=name, is_trainable=False)
        except (RuntimeError, ValueError, KeyError) as exc:
            lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
            mismatch = [line for line in lines if "size mismatch" in line]
            first = (mismatch or lines or [type(exc).__name__])[0]
            raise PolyloraError(
                f"adapter {source.ref!r} does not fit the base model: {first[:300]} "
                "(all merged adapters must be trained on the same base model as --base)"
            ) from None
    peft_model.eval()
    return peft_model, names


def merge_loaded(
    peft_model: Any,
    names: Sequence[str],
    weights: Sequence[float],
    method: str,
    density: float | None = None,
    seed: int = 0,
) -> Any:
    """Add the weighted combination of ``names`` as the active adapter ``default``."""
    import torch

    if method not in PEFT_METHODS:
        raise ConfigError(f"--method {method} is not a static merge; use one of {PEFT_METHODS}")
    kwargs: dict[str, Any] = {}
    if method in DENSITY_METHODS:
        kwargs["density"] = density
    if MERGED_NAME in peft_model.peft_config:
        peft_model.delete_adapter(MERGED_NAME)
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # DARE drops parameters at random
        try:
            peft_model.add_weighted_adapter(
                adapters=list(names),
                weights=list(weights),
                adapter_name=MERGED_NAME,
                combination_type=method,
                **kwargs,
            )
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"PEFT cannot merge these adapters with {method}: {exc}") from None
    peft_model.set_adapter(MERGED_NAME)
    peft_model.eval()
    return peft_model


def merge_adapters(
    sources: Sequence[AdapterSource],
    model_cfg: DictConfig,
    hardware_cfg: DictConfig,
    method: str,
    weights: Sequence[float],
    out_dir: str | Path,
    density: float | None = None,
    seed: int = 0,
) -> Path:
    """Load the base model, merge the adapters and save the result (PEFT format) to out_dir."""
    from polylora.models import load_base_model

    check_compatible(sources, method, model_cfg)
    _check_density(method, density)
    model, _ = load_base_model(model_cfg, hardware_cfg)
    peft_model, names = load_sources(model, sources)
    merge_loaded(peft_model, names, weights, method, density, seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(out, selected_adapters=[MERGED_NAME])
    info = {
        "method": method,
        "sources": [s.ref for s in sources],
        "weights": list(weights),
        "density": density,
        "seed": seed,
        "model": OmegaConf.to_container(model_cfg, resolve=True),
    }
    (out / MERGE_INFO_FILE).write_text(json.dumps(info, indent=2, default=str))
    return out


def _check_density(method: str, density: float | None) -> None:
    if method in DENSITY_METHODS:
        if density is None:
            raise ConfigError(
                f"--method {method} needs --density (the fraction of each adapter's weights "
                "kept, in (0, 1]), e.g. --density 0.5"
            )
        if not 0.0 < density <= 1.0:
            raise ConfigError(f"--density must be in (0, 1], got {density}")


# --- sparse top-k routing ---------------------------------------------------------------------


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


def prompt_text(example: Any) -> str:
    """The text a prompt is routed by: the prompt, or the user turns of a chat prompt."""
    if isinstance(example.prompt, str):
        return example.prompt
    return "\n".join(m.get("content", "") for m in example.prompt if m.get("role") == "user")


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
    """Route each test prompt to its top-k adapters, generate, score with the suite, and log
    an MLflow run with the pipeline's metric names (``eval/...``, ``data/...``).

    ``cfg`` is a composed polylora config (the data/eval/model the adapters are scored on);
    ``embedder`` defaults to the shared MiniLM.
    """
    from transformers import set_seed

    from polylora import pipeline, tracking
    from polylora.evaluation import (
        MODEL_METRICS,
        EvalReport,
        eval_subset,
        generation_row,
        reference_nll,
    )
    from polylora.metrics.embeddings import encode_unique
    from polylora.metrics.suite import PromptGenerations, score_generations
    from polylora.models import load_base_model

    started = time.time()
    check_compatible(sources, "sparse_topk", cfg.model)
    if not cfg.eval.enabled:
        raise ConfigError("sparse_topk is evaluated through eval.*; do not set eval.enabled=false")
    prep = pipeline.prepare(cfg)
    model, tok = load_base_model(cfg.model, cfg.hardware)
    peft_model, names = load_sources(model, sources)
    routed = RoutedAdapters(peft_model, names)
    fmt = pipeline.prompt_format(cfg, prep.splits.train)
    subset = eval_subset(prep.splits.test, cfg.eval.subset_size)
    to_route = list({e.id: e for e in [*subset, *prep.splits.val]}.values())
    vectors = encode_unique([prompt_text(e) for e in to_route], embedder)
    routes = dict(
        zip(
            [e.id for e in to_route],
            route_prompts(vectors, centroids, k, weighting, temperature),
            strict=True,
        )
    )
    out_dir = Path(cfg.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tags = {
        **pipeline.run_tags(cfg),
        "polylora.merge": "sparse_topk",
        "polylora.merge.k": str(k),
        "polylora.merge.weighting": weighting,
        "polylora.merge.sources": ",".join(s.ref for s in sources),
        **(extra_tags or {}),
    }
    names_wanted = list(cfg.eval.metrics)
    with tracking.mlflow_run(cfg, tags) as active:
        (out_dir / "config.yaml").write_text(redaction.config_yaml(cfg))
        tracking.log_artifact(out_dir / "config.yaml")
        pipeline.log_data_summary(cfg, prep, out_dir)
        set_seed(cfg.seed)
        metrics: dict[str, float] = {}
        if prep.splits.val:  # the validation loss, as the pipeline's last eval/loss point
            nll = _routed_nll(routed, routes, prep.splits.val, tok, fmt, cfg, reference_nll)
            loss = float(np.mean(list(nll.values())))
            metrics["eval/loss"] = loss
            metrics["eval/perplexity"] = math.exp(min(loss, 50.0))
        test_nll: dict[str, float] = {}
        if any(m in names_wanted for m in MODEL_METRICS):
            test_nll = _routed_nll(routed, routes, subset, tok, fmt, cfg, reference_nll)
            metrics["eval/test_loss"] = float(np.mean(list(test_nll.values())))
            metrics["eval/test_perplexity"] = math.exp(min(metrics["eval/test_loss"], 50.0))
        samples, greedy = _routed_generations(routed, routes, subset, tok, fmt, cfg.eval)
        gens = [
            PromptGenerations(example=e, samples=samples[e.id], greedy=greedy[e.id]) for e in subset
        ]
        scores = score_generations(
            gens,
            [m for m in names_wanted if m not in MODEL_METRICS],
            checker=prep.checker,
            ks=tuple(cfg.eval.ks),
            show_progress=False,
        )
        metrics.update({f"eval/{key}": value for key, value in scores.aggregate.items()})
        share = np.zeros(len(sources))
        for e in subset:
            for i, w in zip(routes[e.id].indices, routes[e.id].weights, strict=True):
                share[i] += w / len(subset)
        for i, value in enumerate(share):
            metrics[f"merge/route_share/{i}"] = float(value)
        metrics["run/wall_time_s"] = time.time() - started
        tracking.log_metrics(metrics)
        rows = []
        for i, g in enumerate(gens):
            route = routes[g.example.id]
            row = generation_row(g, scores, i, test_nll.get(g.example.id))
            row["route"] = {
                "adapters": [sources[j].ref for j in route.indices],
                "indices": list(route.indices),
                "weights": list(route.weights),
                "similarities": list(route.similarities),
            }
            rows.append(row)
        path = EvalReport(metrics=metrics, rows=rows).write_jsonl(out_dir / "generations.jsonl")
        tracking.log_artifact(path, "eval")
        (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        run_id = active.info.run_id
    return SparseResult(metrics=metrics, run_id=run_id, routes=routes, output_dir=out_dir)


def _groups(routes: dict[str, Route], examples: Sequence[Any]) -> dict[Any, list[Any]]:
    """Examples batched by route (same adapters and rounded weights), in first-seen order."""
    grouped: dict[Any, list[Any]] = {}
    for e in examples:
        grouped.setdefault(routes[e.id].key, []).append(e)
    return grouped


def _routed_nll(
    routed: RoutedAdapters,
    routes: dict[str, Route],
    examples: Sequence[Any],
    tok: Any,
    fmt: Any,
    cfg: DictConfig,
    reference_nll: Any,
) -> dict[str, float]:
    """Each example's reference NLL under its own route's combination, by example id."""
    out: dict[str, float] = {}
    for members in _groups(routes, examples).values():
        routed.apply(routes[members[0].id])
        values = reference_nll(
            routed.module, tok, members, fmt, cfg.data.max_length, cfg.train.batch_size
        )
        out.update(zip([e.id for e in members], values, strict=True))
    return out


def _routed_generations(
    routed: RoutedAdapters,
    routes: dict[str, Route],
    examples: Sequence[Any],
    tok: Any,
    fmt: Any,
    eval_cfg: DictConfig,
) -> tuple[dict[str, list[str]], dict[str, str | None]]:
    """n samples (and the greedy answer) per example, each under its own route."""
    from polylora.data.formatting import render_prompt
    from polylora.generation import SamplingParams, sample_many

    samples: dict[str, list[str]] = {}
    greedy: dict[str, str | None] = {e.id: None for e in examples}
    params = SamplingParams(
        n=eval_cfg.n_samples,
        temperature=eval_cfg.temperature,
        top_p=eval_cfg.top_p,
        max_new_tokens=eval_cfg.max_new_tokens,
    )
    for members in _groups(routes, examples).values():
        routed.apply(routes[members[0].id])
        ids = [
            tok(render_prompt(e, tok, fmt), add_special_tokens=False)["input_ids"] for e in members
        ]
        requests = [params]
        if eval_cfg.greedy:
            requests.append(SamplingParams(max_new_tokens=eval_cfg.max_new_tokens, greedy=True))
        # One prefill per prompt for its samples and its greedy answer, as in evaluation.
        done = sample_many(routed.module, tok, ids, requests, eval_cfg.batch_size,
                           sort_by_length=True)
        for e, texts in zip(members, done[0].texts, strict=True):
            samples[e.id] = texts
        if eval_cfg.greedy:
            for e, texts in zip(members, done[1].texts, strict=True):
                greedy[e.id] = texts[0]
    return samples, greedy


# --- configs from overrides -------------------------------------------------------------------


def compose_config(overrides: Sequence[str], output_dir: str | Path) -> DictConfig:
    """Compose ``polylora/conf/config.yaml`` with Hydra overrides outside a Hydra app."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from polylora.config import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR)):
            return compose(
                config_name="config",
                overrides=[f"output_dir={_hydra_quote(str(output_dir))}", *overrides],
            )
    except (HydraException, OmegaConfBaseException) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ConfigError(f"cannot compose the config from {list(overrides)}: {first}") from None
    finally:
        GlobalHydra.instance().clear()


def _split_overrides(text: str | None) -> list[str]:
    if not text:
        return []
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"cannot parse the overrides {text!r}: {exc}") from None


def _hydra_quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def _tag_override(key: str, value: str) -> str:
    escaped_key = key.replace(".", "\\.")  # a dotted tag name is one key, not a path
    return f"++tracking.tags.{escaped_key}={_hydra_quote(value)}"


def _tracking_overrides(args: argparse.Namespace) -> list[str]:
    out = []
    if args.tracking_uri:
        out.append(f"tracking.uri={_hydra_quote(args.tracking_uri)}")
    if args.experiment:
        out.append(f"tracking.experiment={_hydra_quote(args.experiment)}")
    return out


def stored_section(run: Mapping[str, Any], name: str, ref: str) -> DictConfig:
    """The ``model`` or ``hardware`` section of a run's stored config, read as data: only the
    schema's scalar fields, no interpolation (``${...}`` is refused, never resolved), and
    ``trust_remote_code`` always false (pass ``--base "... model.trust_remote_code=true"`` to
    opt in yourself). An artifact can be written by anyone with access to the store."""
    from polylora.config import HardwareConfig, ModelConfig

    schema = {"model": ModelConfig, "hardware": HardwareConfig}[name]
    import dataclasses

    base = OmegaConf.structured(schema)
    known = {f.name for f in dataclasses.fields(schema)}
    clean: dict[str, Any] = {}
    for key, value in (run.get(name) or {}).items():
        if key not in known or isinstance(value, dict | list):
            continue
        if isinstance(value, str) and "${" in value:
            raise ConfigError(
                f"the stored config of {ref} has an interpolation in {name}.{key} ({value!r}); "
                'stored configs are data: pass the base model with --base "model=..."'
            )
        clean[key] = value
    if clean.get("trust_remote_code"):
        log.warning(
            "ignoring %s.trust_remote_code=true from the stored config of %s; pass --base "
            '"... model.trust_remote_code=true" to allow remote code yourself', name, ref
        )
        clean["trust_remote_code"] = False
    try:
        return OmegaConf.merge(base, clean)
    except Exception as exc:
        raise ConfigError(
            f"the stored config of {ref} has an invalid {name} section: {str(exc).splitlines()[0]}"
        ) from None


def _base_configs(
    args: argparse.Namespace, sources: Sequence[AdapterSource]
) -> tuple[DictConfig, DictConfig]:
    """(model, hardware) configs: from --base, else --evaluate, else the first run's config."""
    overrides = args.base if args.base is not None else args.evaluate
    if overrides is not None:
        cfg = compose_config(_split_overrides(overrides), Path(args.out))
        return cfg.model, cfg.hardware
    for source in sources:
        run = source.run_config or {}
        if isinstance(run.get("model"), dict) and isinstance(run.get("hardware"), dict):
            model = stored_section(run, "model", source.ref)
            return model, stored_section(run, "hardware", source.ref)
    raise ConfigError(
        "cannot tell which base model the adapters belong to (no run config.yaml beside "
        'them); pass --base "model=..." (Hydra overrides, e.g. --base "model=smollm2_135m")'
    )


# --- the CLI ----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``polylora merge``."""
    parser.add_argument(
        "adapters", nargs="+", help="adapter folders or runs:/<run_id>/adapter URIs (2 or more)"
    )
    parser.add_argument("--method", choices=METHODS, default="linear", help="how to combine")
    parser.add_argument("--out", required=True, help="output folder (merged adapter / results)")
    parser.add_argument(
        "--weights", help="comma-separated weight per adapter (static merges; default 1/n each)"
    )
    parser.add_argument(
        "--density", type=float, help="fraction of weights kept (ties, dare_linear, dare_ties)"
    )
    parser.add_argument("--k", type=int, help="sparse_topk: adapters combined per prompt")
    parser.add_argument(
        "--centroids", help="sparse_topk: .npy of cluster centroids (from polylora cluster)"
    )
    parser.add_argument(
        "--cluster-ids",
        help="sparse_topk: centroid row of each adapter, comma-separated (default: each "
        "per-cluster run's data.partition_value, else 0,1,2,...)",
    )
    parser.add_argument(
        "--weighting",
        choices=WEIGHTINGS,
        default="similarity",
        help="sparse_topk: weights ∝ similarity (default) or softmax(similarity/temperature)",
    )
    parser.add_argument("--temperature", type=float, default=0.1, help="softmax temperature")
    parser.add_argument(
        "--base", help='Hydra overrides naming the base model, e.g. "model=smollm2_135m"'
    )
    parser.add_argument(
        "--evaluate",
        help='Hydra overrides of the evaluation run, e.g. "+experiment=triage" (required for '
        "sparse_topk)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for DARE's random pruning")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI of the evaluation run")
    parser.add_argument("--experiment", help="MLflow experiment of the evaluation run")


def _validate_args(args: argparse.Namespace) -> None:
    n = len(args.adapters)
    if n < 2:
        raise ConfigError(f"polylora merge needs at least 2 adapters, got {n}")
    sparse = args.method == "sparse_topk"
    if sparse:
        if args.weights is not None:
            raise ConfigError(
                "--weights does not apply to sparse_topk: its weights come from each prompt's "
                "similarity to the cluster centroids"
            )
        if args.k is None:
            raise ConfigError("--method sparse_topk needs --k (adapters combined per prompt)")
        if not 1 <= args.k <= n:
            raise ConfigError(
                f"--k {args.k} exceeds the number of adapters ({n}); use 1 <= k <= {n}"
                if args.k > n
                else f"--k must be >= 1, got {args.k}"
            )
        if not args.centroids:
            raise ConfigError(
                "--method sparse_topk needs --centroids centroids.npy (written by "
                "`polylora cluster`), one row per adapter's cluster"
            )
        if not args.evaluate:
            raise ConfigError(
                "sparse_topk builds no single adapter to save; pass --evaluate "
                '"<overrides>" naming the data to route and score, e.g. '
                '--evaluate "data=jsonl data.path=clustered.jsonl"'
            )
        if args.temperature <= 0:
            raise ConfigError(f"--temperature must be > 0, got {args.temperature}")
    else:
        if args.k is not None or args.centroids is not None:
            raise ConfigError("--k and --centroids apply to --method sparse_topk only")
        parse_weights(args.weights, n)
        _check_density(args.method, args.density)


def partition_cluster_id(source: AdapterSource) -> int | None:
    """The integer ``data.partition_value`` of the run that trained the adapter, if any."""
    data = (source.run_config or {}).get("data")
    if not isinstance(data, dict) or not data.get("partition_by"):
        return None
    try:
        return int(str(data.get("partition_value")))
    except ValueError:
        return None


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


def run(args: argparse.Namespace) -> int:
    """Entry point of ``polylora merge``."""
    _validate_args(args)
    sources = resolve_sources(args.adapters)
    out = Path(args.out).expanduser().resolve()
    if args.method == "sparse_topk":
        cluster_ids = resolve_cluster_ids(sources, args.cluster_ids)
        centroids = load_centroids(args.centroids, len(sources), cluster_ids)
        if cluster_ids is not None:
            pairs = ", ".join(f"{s.ref} → {c}" for s, c in zip(sources, cluster_ids, strict=True))
            print(f"centroid row per adapter: {pairs}")
        overrides = [
            *_split_overrides(args.evaluate),
            "train.enabled=false",
            *_tracking_overrides(args),
        ]
        if not any(o.lstrip("+").startswith("tracking.group=") for o in overrides):
            overrides.append("tracking.group=merge/sparse_topk")
        cfg = compose_config(overrides, out)
        result = evaluate_sparse(cfg, sources, centroids, args.k, args.weighting, args.temperature)
        shown = {k: v for k, v in sorted(result.metrics.items()) if k.startswith("eval/")}
        print(f"sparse_topk (k={args.k}) over {len(sources)} adapters → run {result.run_id}")
        for key, value in shown.items():
            if not key.endswith("_moe"):
                print(f"  {key} = {value:.4f}")
        print(f"generations and routes: {out / 'generations.jsonl'}")
        return 0

    weights = parse_weights(args.weights, len(sources))
    model_cfg, hardware_cfg = _base_configs(args, sources)
    merged = merge_adapters(
        sources, model_cfg, hardware_cfg, args.method, weights, out, args.density, args.seed
    )
    print(f"merged {len(sources)} adapters ({args.method}, weights {weights}) → {merged}")
    if args.evaluate:
        return _evaluate_merged(args, merged, weights)
    return 0


def _evaluate_merged(args: argparse.Namespace, merged: Path, weights: Sequence[float]) -> int:
    """Run the normal pipeline on the merged adapter (evaluation only) in a subprocess."""
    overrides = [
        *_split_overrides(args.evaluate),
        "train.enabled=false",
        f"model.adapter={_hydra_quote(str(merged))}",
        *_tracking_overrides(args),
        _tag_override("polylora.merge", args.method),
        _tag_override("polylora.merge.sources", ",".join(args.adapters)),
        _tag_override("polylora.merge.weights", ",".join(f"{w:g}" for w in weights)),
    ]
    if args.density is not None:
        overrides.append(_tag_override("polylora.merge.density", f"{args.density:g}"))
    if not any(o.lstrip("+").startswith("tracking.group=") for o in overrides):
        overrides.append(f"tracking.group=merge/{args.method}")
    command = [sys.executable, "-m", "polylora", *overrides]
    print("evaluating:", " ".join(shlex.quote(c) for c in command), flush=True)
    code = subprocess.run(command, check=False).returncode
    if code != 0:
        raise PolyloraError(
            f"evaluating the merged adapter failed (python -m polylora exited {code}; see its "
            f"message above); the merged adapter is saved in {merged}"
        )
    return 0
