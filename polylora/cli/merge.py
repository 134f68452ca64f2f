"""``polylora merge``: combine trained LoRA adapters of one base model, and evaluate the result.

The command line over :mod:`polylora.adapters`: static merges (``linear``, ``ties``,
``dare_linear``, ``dare_ties``, ``cat``; :mod:`~polylora.adapters.merging`) are saved to
``--out`` and, with ``--evaluate "<hydra overrides>"``, scored by the pipeline
(:func:`polylora.run.pipeline.execute`, evaluation only) so merged, per-cluster and unified runs
sit in one MLflow table (tag ``polylora.merge=<method>``); sparse top-k routing
(``sparse_topk``; :mod:`~polylora.adapters.routing`) builds no single adapter: the pipeline
is given the routed mixture to evaluate.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from polylora.adapters.merging import METHODS, check_density, merge_adapters, parse_weights
from polylora.adapters.routing import (
    WEIGHTINGS,
    load_centroids,
    resolve_cluster_ids,
)
from polylora.adapters.sources import AdapterSource, resolve_sources, stored_section
from polylora.config.compose import compose_config
from polylora.config.overrides import hydra_quote
from polylora.errors import ConfigError
from polylora.record import names
from polylora.record.writer import merge_tags
from polylora.run.sparse import evaluate_sparse

#: The evaluation run's output folder inside ``--out`` (unless its overrides set output_dir=).
EVALUATION_DIR = "evaluation"


def _split_overrides(text: str | None) -> list[str]:
    if not text:
        return []
    try:
        return shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"cannot parse the overrides {text!r}: {exc}") from None


def _tag_override(key: str, value: str) -> str:
    escaped_key = key.replace(".", "\\.")  # a dotted tag name is one key, not a path
    return f"++tracking.tags.{escaped_key}={hydra_quote(value)}"


def _tracking_overrides(args: argparse.Namespace) -> list[str]:
    out = []
    if args.tracking_uri:
        out.append(f"tracking.uri={hydra_quote(args.tracking_uri)}")
    if args.experiment:
        out.append(f"tracking.experiment={hydra_quote(args.experiment)}")
    return out

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
        "sparse_topk); static merges write its files to <out>/evaluation unless the overrides "
        "set output_dir=",
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
        check_density(args.method, args.density)

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
        print(f"sparse_topk (k={args.k}) over {len(sources)} adapters → run {result.run_id}")
        _print_eval_metrics(result.metrics)
        print(f"generations and routes: {out / names.GENERATIONS_FILE}")
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
    """Evaluate the merged adapter as a pipeline run (``train.enabled=false
    model.adapter=<merged>``) in a fresh process: this one holds what merging loaded, which
    would otherwise count as the run's peak memory (see
    :func:`polylora.run.pipeline.execute_in_fresh_process`)."""
    from polylora.run.pipeline import execute_in_fresh_process

    overrides = [
        *_split_overrides(args.evaluate),
        "train.enabled=false",
        f"model.adapter={hydra_quote(str(merged))}",
        *_tracking_overrides(args),
        *(_tag_override(k, v) for k, v in
          merge_tags(args.method, args.adapters, weights, args.density).items()),
    ]
    if not any(o.lstrip("+").startswith("tracking.group=") for o in overrides):
        overrides.append(f"tracking.group=merge/{args.method}")
    cfg = compose_config(overrides, merged / EVALUATION_DIR)
    print(f"evaluating the merged adapter: {shlex.join(overrides)}", flush=True)
    result = execute_in_fresh_process(cfg)
    print(f"merged adapter ({args.method}) evaluated → run {result.run_id}; files in "
          f"{result.output_dir}")
    _print_eval_metrics(result.metrics)
    return 0


def _print_eval_metrics(metrics: dict[str, float]) -> None:
    """The run's ``eval/`` metrics, one a line (margins of error left out)."""
    for key, value in sorted(metrics.items()):
        if key.startswith(names.EVAL_PREFIX) and not key.endswith("_moe"):
            print(f"  {key} = {value:.4f}")
