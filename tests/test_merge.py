"""``polylora merge``: PEFT weighted merges reproduce what they should, sparse top-k routing
sends each prompt to the expected adapter and generates with exactly that combination, merged
results are evaluated into the same MLflow table, and bad input is one line, exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from peft import PeftModel

from polylora import models
from polylora.cli import main
from polylora.merge import (
    MERGE_INFO_FILE,
    Route,
    RoutedAdapters,
    check_compatible,
    compose_config,
    evaluate_sparse,
    load_sources,
    merge_adapters,
    resolve_cluster_ids,
    resolve_sources,
    route_prompts,
)

PROMPT = "Name an English word that starts with 'b' and has 5 letters."
# The smoke evaluation without its embedding-based metrics (faster; the names still match).
CHEAP_EVAL = "eval.metrics=[test_loss,accuracy,sample_accuracy,pass@1,pass@2] eval.ks=[1,2]"


def _make_adapter(cfg, run_dir: Path, seed: int, rank: int = 4, model_overrides=None) -> Path:
    """A tiny LoRA adapter with random (non-zero) A and B, saved like a pipeline run does:
    ``<run_dir>/adapter`` plus the run's ``<run_dir>/config.yaml``."""
    run_cfg = OmegaConf.merge(cfg, {"model": model_overrides or {}, "lora": {"rank": rank}})
    base, _ = models.load_base_model(run_cfg.model, run_cfg.hardware)
    # alpha != rank so the merge must carry each adapter's scaling (alpha / r) correctly
    lora = OmegaConf.merge(run_cfg.lora, {"alpha": 2.0 * rank, "dropout": 0.0})
    peft_model = models.wrap_lora(base, lora, run_cfg.hardware)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    run_dir.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(run_dir / "adapter")
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(run_cfg, resolve=True))
    return run_dir / "adapter"


@pytest.fixture(scope="module")
def tiny_adapters(tmp_path_factory: pytest.TempPathFactory):
    """The smoke config and four adapters: a, b (rank 4), wide (rank 8), other_base (rank 4
    but trained on a differently initialized tiny model)."""
    root = tmp_path_factory.mktemp("adapters")
    cfg = compose_config(["+experiment=smoke"], root / "unused")
    adapters = {
        "a": _make_adapter(cfg, root / "a", seed=1),
        "b": _make_adapter(cfg, root / "b", seed=2),
        "wide": _make_adapter(cfg, root / "wide", seed=3, rank=8),
        "other_base": _make_adapter(cfg, root / "other", seed=4, model_overrides={"init_seed": 7}),
    }
    return cfg, adapters


def _logits(cfg, adapter: Path | None, prompt: str = PROMPT) -> torch.Tensor:
    base, tok = models.load_base_model(cfg.model, cfg.hardware)
    model = base if adapter is None else PeftModel.from_pretrained(base, adapter)
    model.eval()
    with torch.no_grad():
        return model(**tok(prompt, return_tensors="pt")).logits


def test_linear_merge_with_weights_1_0_reproduces_the_first_adapter(
    tiny_adapters, tmp_path
) -> None:
    cfg, ad = tiny_adapters
    sources = resolve_sources([str(ad["a"]), str(ad["b"])])
    out = merge_adapters(sources, cfg.model, cfg.hardware, "linear", [1.0, 0.0], tmp_path / "m")
    assert (out / "adapter_config.json").is_file()
    assert (out / "adapter_model.safetensors").is_file()
    info = json.loads((out / MERGE_INFO_FILE).read_text())
    assert info["method"] == "linear" and info["weights"] == [1.0, 0.0]

    merged, first, second = _logits(cfg, out), _logits(cfg, ad["a"]), _logits(cfg, ad["b"])
    torch.testing.assert_close(merged, first)
    assert not torch.allclose(first, second, atol=1e-3)  # the adapters really differ

    half = merge_adapters(sources, cfg.model, cfg.hardware, "linear", [0.5, 0.5], tmp_path / "half")
    mixed = _logits(cfg, half)
    assert not torch.allclose(mixed, first, atol=1e-3)
    assert not torch.allclose(mixed, second, atol=1e-3)


def test_cat_merge_equals_the_routed_weighted_sum(tiny_adapters, tmp_path) -> None:
    """PEFT's exact ``cat`` merge and the sparse router's on-the-fly mix compute the same
    ``Σ wᵢ ΔWᵢ`` (also across different ranks)."""
    cfg, ad = tiny_adapters
    refs = [str(ad["a"]), str(ad["wide"])]
    sources = resolve_sources(refs)
    out = merge_adapters(sources, cfg.model, cfg.hardware, "cat", [0.7, 0.3], tmp_path / "cat")
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 12  # 4 + 8

    base, tok = models.load_base_model(cfg.model, cfg.hardware)
    routed = RoutedAdapters(*load_sources(base, sources))
    routed.apply(Route(indices=(0, 1), weights=(0.7, 0.3)))
    with torch.no_grad():
        on_the_fly = routed.module(**tok(PROMPT, return_tensors="pt")).logits
    torch.testing.assert_close(on_the_fly, _logits(cfg, out))


@pytest.mark.parametrize("method", ["ties", "dare_linear", "dare_ties"])
def test_pruning_merges_write_a_loadable_adapter(tiny_adapters, tmp_path, method: str) -> None:
    cfg, ad = tiny_adapters
    sources = resolve_sources([str(ad["a"]), str(ad["b"])])
    out = merge_adapters(
        sources, cfg.model, cfg.hardware, method, [0.5, 0.5], tmp_path / method, density=0.5
    )
    logits = _logits(cfg, out)
    assert torch.isfinite(logits).all()
    assert not torch.allclose(logits, _logits(cfg, None), atol=1e-4)  # the merge did something


def test_cli_merge_infers_the_base_model_from_the_runs(tiny_adapters, tmp_path, capsys) -> None:
    _, ad = tiny_adapters
    out = tmp_path / "cli"
    code = main(["merge", str(ad["a"]), str(ad["b"]), "--weights", "1,0", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert (out / "adapter_model.safetensors").is_file()
    assert "merged 2 adapters (linear" in capsys.readouterr().out


def test_route_k1_with_centroids_at_the_prompts_picks_that_adapter() -> None:
    from polylora.metrics.embeddings import get_embedder

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
    from polylora.data.formatting import render_prompt
    from polylora.evaluation import eval_subset
    from polylora.generation import SamplingParams, sample
    from polylora.metrics.embeddings import get_embedder
    from polylora.pipeline import prepare, prompt_format

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
        ids = [
            tok(render_prompt(e, tok, fmt), add_special_tokens=False)["input_ids"]
            for e in routed_here
        ]
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


def test_merged_adapter_is_evaluated_into_the_same_table(
    tiny_adapters, tmp_path, mlflow_uri, capfd
) -> None:
    """--evaluate runs the normal pipeline on the merged adapter (no training) and tags it."""
    _, ad = tiny_adapters
    experiment = "merge-eval-test"
    overrides = (
        f"+experiment=smoke tracking.uri={mlflow_uri} tracking.experiment={experiment} "
        f"hydra.run.dir={tmp_path / 'eval_run'} {CHEAP_EVAL}"
    )
    out = tmp_path / "merged"
    argv = ["merge", str(ad["a"]), str(ad["b"]), "--weights", "0.5,0.5", "--out", str(out)]
    code = main([*argv, "--evaluate", overrides])
    assert code == 0, capfd.readouterr().err[-3000:]
    client = mlflow.MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["polylora.merge"] == "linear"
    assert run.data.tags["polylora.merge.sources"] == f"{ad['a']},{ad['b']}"
    assert run.data.tags["polylora.merge.weights"] == "0.5,0.5"
    assert run.data.tags["polylora.group"] == "merge/linear"
    assert run.data.params["model.adapter"] == str(out.resolve())
    assert run.data.params["train.enabled"] == "False"
    assert "eval/accuracy" in run.data.metrics and "eval/loss" in run.data.metrics
    assert "train/final_loss" not in run.data.metrics


# --- bad input --------------------------------------------------------------------------------


def _one_line_error(capsys: pytest.CaptureFixture[str], *needles: str) -> str:
    """The error is one ``polylora: error:`` line, last on stderr, with no traceback (library
    warnings printed earlier in the process may precede it)."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    last = err.splitlines()[-1] if err else ""
    assert last.startswith("polylora: error: "), err
    assert err.count("polylora: error:") == 1, err
    for needle in needles:
        assert needle in last, err
    return last


def test_k_larger_than_the_number_of_adapters(tiny_adapters, tmp_path, capsys) -> None:
    _, ad = tiny_adapters
    centroids = tmp_path / "c.npy"
    np.save(centroids, np.eye(2, 384))
    code = main(
        [
            "merge",
            str(ad["a"]),
            str(ad["b"]),
            "--method",
            "sparse_topk",
            "--k",
            "3",
            "--centroids",
            str(centroids),
            "--evaluate",
            "+experiment=smoke",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    _one_line_error(capsys, "--k 3", "number of adapters (2)")


def test_weights_count_must_match_the_adapters(tiny_adapters, tmp_path, capsys) -> None:
    _, ad = tiny_adapters
    argv = ["merge", str(ad["a"]), str(ad["b"]), "--weights", "0.2,0.3,0.5"]
    code = main([*argv, "--out", str(tmp_path / "o")])
    assert code == 2
    _one_line_error(capsys, "3 value(s) for 2 adapter(s)")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    ("extra", "needles"),
    [
        (["--k", "1", "--evaluate", "+experiment=smoke"], ["--centroids"]),
        (["--k", "1", "--centroids", "missing.npy", "--evaluate", "x=1"], ["missing.npy"]),
        (["--centroids", "c.npy", "--evaluate", "x=1"], ["needs --k"]),
    ],
)
def test_sparse_topk_needs_k_and_existing_centroids(
    tiny_adapters, tmp_path, capsys, extra: list[str], needles: list[str]
) -> None:
    _, ad = tiny_adapters
    code = main(
        ["merge", str(ad["a"]), str(ad["b"]), "--method", "sparse_topk", *extra, "--out", "o"]
    )
    assert code == 2
    _one_line_error(capsys, *needles)


def test_centroid_rows_must_match_the_adapters(tiny_adapters, tmp_path, capsys) -> None:
    _, ad = tiny_adapters
    centroids = tmp_path / "c.npy"
    np.save(centroids, np.eye(3, 384))
    code = main(
        [
            *("merge", str(ad["a"]), str(ad["b"]), "--method", "sparse_topk", "--k", "1"),
            *("--centroids", str(centroids), "--evaluate", "+experiment=smoke"),
            *("--out", str(tmp_path / "o")),
        ]
    )
    assert code == 2
    _one_line_error(capsys, "3 rows for 2 adapters", "--cluster-ids")


def test_unequal_ranks_for_linear(tiny_adapters, tmp_path, capsys) -> None:
    _, ad = tiny_adapters
    code = main(["merge", str(ad["a"]), str(ad["wide"]), "--out", str(tmp_path / "o")])
    assert code == 2
    _one_line_error(capsys, "equal LoRA rank", "r=4", "r=8", "--method cat")


def test_adapters_from_different_base_models(tiny_adapters, tmp_path, capsys) -> None:
    _, ad = tiny_adapters
    code = main(["merge", str(ad["a"]), str(ad["other_base"]), "--out", str(tmp_path / "o")])
    assert code == 2
    _one_line_error(capsys, "different base models", "init_seed")
    # The library check says the same without the CLI.
    with pytest.raises(Exception, match="different base models"):
        check_compatible(resolve_sources([str(ad["a"]), str(ad["other_base"])]), "cat")


def test_adapter_that_does_not_fit_the_base_model(tiny_adapters, tmp_path, capsys) -> None:
    """No run config to compare: the shape mismatch at load time is the clear error."""
    cfg, ad = tiny_adapters
    wide = _make_adapter(cfg, tmp_path / "wide_base", seed=5, model_overrides={"hidden_size": 64})
    (tmp_path / "wide_base" / "config.yaml").unlink()
    capsys.readouterr()  # drop library warnings printed while building the adapter
    argv = ["merge", str(ad["a"]), str(wide), "--base", "+experiment=smoke"]
    code = main([*argv, "--out", str(tmp_path / "o")])
    assert code == 2
    _one_line_error(capsys, str(wide), "does not fit the base model", "size mismatch")


def test_ties_needs_density(tiny_adapters, tmp_path, capsys) -> None:
    _, ad = tiny_adapters
    code = main(
        ["merge", str(ad["a"]), str(ad["b"]), "--method", "ties", "--out", str(tmp_path / "o")]
    )
    assert code == 2
    _one_line_error(capsys, "--density")


def test_stored_configs_are_data_not_code(caplog) -> None:
    from polylora.errors import ConfigError
    from polylora.merge import stored_section

    run = {
        "model": {"name": "m", "source": "hf", "path": "/models/x", "trust_remote_code": True},
        "hardware": {"name": "cpu", "device": "cpu"},
    }
    model = stored_section(run, "model", "runs:/abc/adapter")
    assert model.trust_remote_code is False and model.path == "/models/x"
    assert "ignoring model.trust_remote_code=true" in caplog.text
    sneaky = {"model": {"name": "m", "source": "hf", "path": "${oc.env:ANTHROPIC_API_KEY}"}}
    with pytest.raises(ConfigError, match=r"interpolation in model\.path"):
        stored_section(sneaky, "model", "runs:/abc/adapter")


def test_cli_merge_never_takes_trust_remote_code_from_a_run(
    tiny_adapters, tmp_path, monkeypatch, capsys
) -> None:
    import shutil

    _, ad = tiny_adapters
    run_dir = tmp_path / "tampered"
    shutil.copytree(ad["a"].parent, run_dir)
    stored = OmegaConf.load(run_dir / "config.yaml")
    stored.model.trust_remote_code = True
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(stored))
    seen = []
    real = models.load_base_model

    def spy(model_cfg, hardware_cfg):
        seen.append(bool(model_cfg.trust_remote_code))
        return real(model_cfg, hardware_cfg)

    monkeypatch.setattr(models, "load_base_model", spy)
    code = main(["merge", str(run_dir / "adapter"), str(ad["b"]), "--weights", "1,0",
                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert seen and not any(seen)
