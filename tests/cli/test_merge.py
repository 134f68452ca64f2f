"""``polylora merge`` on the command line: merges from the CLI, merged results evaluated into
the same MLflow table, and bad input as one line, exit 2."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from helpers import CHEAP_EVAL, make_adapter, tiny_adapter_set
from omegaconf import OmegaConf

from polylora.adapters.merging import check_compatible
from polylora.adapters.sources import resolve_sources
from polylora.cli.main import main
from polylora.model import loading as models


@pytest.fixture(scope="module")
def tiny_adapters(tmp_path_factory: pytest.TempPathFactory):
    """The smoke config and four tiny adapters (see ``helpers.tiny_adapter_set``)."""
    return tiny_adapter_set(tmp_path_factory.mktemp("adapters"))


def test_cli_merge_infers_the_base_model_from_the_runs(tiny_adapters, tmp_path, capsys) -> None:
    _, ad = tiny_adapters
    out = tmp_path / "cli"
    code = main(["merge", str(ad["a"]), str(ad["b"]), "--weights", "1,0", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert (out / "adapter_model.safetensors").is_file()
    assert "merged 2 adapters (linear" in capsys.readouterr().out


def test_merged_adapter_is_evaluated_into_the_same_table(
    tiny_adapters, tmp_path, mlflow_uri, capfd
) -> None:
    """--evaluate runs the pipeline on the merged adapter (no training, in a fresh process),
    tags it, writes its files to <out>/evaluation and prints the run it made."""
    _, ad = tiny_adapters
    experiment = "merge-eval-test"
    overrides = f"+experiment=smoke tracking.uri={mlflow_uri} tracking.experiment={experiment} "
    out = tmp_path / "merged"
    argv = ["merge", str(ad["a"]), str(ad["b"]), "--weights", "0.5,0.5", "--out", str(out)]
    code = main([*argv, "--evaluate", overrides + CHEAP_EVAL])
    printed = capfd.readouterr()
    assert code == 0, printed.err[-3000:]
    client = mlflow.MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([exp.experiment_id])
    assert f"evaluated → run {run.info.run_id}" in printed.out
    assert run.info.status == "FINISHED"
    assert run.data.tags["polylora.merge"] == "linear"
    assert run.data.tags["polylora.merge.sources"] == f"{ad['a']},{ad['b']}"
    assert run.data.tags["polylora.merge.weights"] == "0.5,0.5"
    assert run.data.tags["polylora.group"] == "merge/linear"
    assert run.data.params["model.adapter"] == str(out.resolve())
    assert run.data.params["train.enabled"] == "False"
    assert "eval/accuracy" in run.data.metrics and "eval/loss" in run.data.metrics
    assert "train/final_loss" not in run.data.metrics
    evaluation = out.resolve() / "evaluation"
    assert run.data.tags["polylora.output_dir"] == str(evaluation)
    assert (evaluation / "mlflow_run_id.txt").read_text() == run.info.run_id
    rows = (evaluation / "generations.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 4  # the smoke experiment's eval.subset_size


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
    wide = make_adapter(cfg, tmp_path / "wide_base", seed=5, model_overrides={"hidden_size": 64})
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
