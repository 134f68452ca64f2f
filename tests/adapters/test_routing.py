"""Sparse top-k routing sends each prompt to the expected adapter, generates with exactly that
combination through the evaluation loop, and records the run with the pipeline's names."""

from __future__ import annotations

import json

import mlflow
import pytest
from helpers import CHEAP_EVAL
from omegaconf import OmegaConf
from peft import PeftModel

from polylora.adapters.routing import resolve_cluster_ids, route_prompts
from polylora.adapters.sources import resolve_sources
from polylora.model import loading as models
from polylora.run.sparse import evaluate_sparse


def test_route_k1_with_centroids_at_the_prompts_picks_that_adapter() -> None:
    from polylora.data.embeddings import get_embedder

    prompts = [
        "Roast the chicken with garlic and rosemary.",
        "The Python function raises a TypeError on empty input.",
        "The striker scored twice in the second half of the match.",
    ]
    vectors = get_embedder().encode(prompts)
    order = [2, 0, 1]  # adapter i's centroid is prompt order[i]'s embedding
    centroids = vectors[order]
    routes = route_prompts(vectors, centroids, k=1)
    assert [r.indices for r in routes] == [(1,), (2,), (0,)]
    assert all(r.weights == (1.0,) for r in routes)

    two = route_prompts(vectors, centroids, k=2)
    for prompt_index, route in enumerate(two):
        assert route.indices[0] == order.index(prompt_index)
        assert sum(route.weights) == pytest.approx(1.0)
        assert route.weights[0] >= route.weights[1]
        assert route.similarities[0] == pytest.approx(1.0, abs=1e-5)
    soft = route_prompts(vectors, centroids, k=3, weighting="softmax", temperature=0.05)
    assert all(r.weights[0] > 0.9 for r in soft)  # a sharp softmax: nearly all on the nearest


def test_centroid_rows_come_from_the_per_cluster_runs(tiny_adapters, tmp_path) -> None:
    """Adapters from `+experiment=per_cluster` runs map to their cluster's centroid row
    whatever their order on the command line; explicit --cluster-ids win."""
    cfg, ad = tiny_adapters
    refs = []
    for value in ("2", "0"):
        run_dir = tmp_path / f"run{value}"
        run_dir.mkdir()
        (run_dir / "adapter").symlink_to(ad["a"], target_is_directory=True)
        run_cfg = OmegaConf.merge(
            cfg, {"data": {"partition_by": "cluster", "partition_value": value}}
        )
        (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(run_cfg, resolve=True))
        refs.append(str(run_dir / "adapter"))
    sources = resolve_sources(refs)
    assert resolve_cluster_ids(sources, None) == [2, 0]
    assert resolve_cluster_ids(sources, "1,0") == [1, 0]
    # Runs without a partition: positional (None).
    assert resolve_cluster_ids(resolve_sources([str(ad["a"]), str(ad["b"])]), None) is None


def test_sparse_topk_generates_with_the_routed_adapter_and_logs_a_run(
    tiny_adapters, compose_cfg, tmp_path
) -> None:
    """k=1 routing: every test prompt's greedy answer is exactly the one its adapter alone
    gives, and the run sits in MLflow with the pipeline's metric names."""
    from polylora.data.embeddings import get_embedder
    from polylora.data.formatting import prompt_token_ids
    from polylora.evaluate.evaluation import eval_subset
    from polylora.model.generation import SamplingParams, sample
    from polylora.run.pipeline import prepare, prompt_format

    _, ad = tiny_adapters
    cfg = compose_cfg(
        [
            "+experiment=smoke",
            "train.enabled=false",
            "tracking.group=merge/sparse_topk",
            *CHEAP_EVAL.split(),
        ],
        output_dir=tmp_path / "sparse",
    )
    prep = prepare(cfg)
    subset = eval_subset(prep.splits.test, cfg.eval.subset_size)
    first = subset[0]
    second = next(e for e in subset if e.prompt != first.prompt)
    centroids = get_embedder().encode([first.prompt, second.prompt])
    sources = resolve_sources([str(ad["a"]), str(ad["b"])])
    result = evaluate_sparse(cfg, sources, centroids, k=1)

    assert result.routes[first.id].indices == (0,)
    assert result.routes[second.id].indices == (1,)
    rows = {
        json.loads(line)["id"]: json.loads(line)
        for line in (result.output_dir / "generations.jsonl").read_text().splitlines()
    }
    assert set(rows) == {e.id for e in subset}
    fmt = prompt_format(cfg, prep.splits.train)
    for index, key in enumerate(("a", "b")):
        routed_here = [e for e in subset if result.routes[e.id].indices == (index,)]
        if not routed_here:
            continue
        base, tok = models.load_base_model(cfg.model, cfg.hardware)
        single = PeftModel.from_pretrained(base, ad[key]).eval()
        # The prompt every evaluation generates from (left-truncated to data.max_length).
        ids = [prompt_token_ids(e, tok, fmt, cfg.data.max_length) for e in routed_here]
        params = SamplingParams(max_new_tokens=cfg.eval.max_new_tokens, greedy=True)
        expected = [t[0] for t in sample(single, tok, ids, params).texts]
        assert [rows[e.id]["greedy"] for e in routed_here] == expected
        assert all(rows[e.id]["route"]["adapters"] == [str(ad[key])] for e in routed_here)

    client = mlflow.MlflowClient(cfg.tracking.uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["polylora.merge"] == "sparse_topk"
    assert run.data.tags["polylora.merge.k"] == "1"
    assert run.data.tags["polylora.group"] == "merge/sparse_topk"
    for key in ("eval/loss", "eval/test_loss", "eval/accuracy", "eval/pass_at_1", "data/test"):
        assert key in run.data.metrics, key
    shares = [run.data.metrics[f"merge/route_share/{i}"] for i in range(2)]
    assert sum(shares) == pytest.approx(1.0)
    # a pipeline run: its load phase, parameter counts and run id file
    assert run.data.metrics["model/trainable_params"] == 0
    assert "run/peak_rss_mb_after_load" in run.data.metrics
    assert (result.output_dir / "mlflow_run_id.txt").read_text() == result.run_id
