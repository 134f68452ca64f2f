"""The smoke experiment end to end on the tiny model: training touches only LoRA weights, the
MLflow run holds params/metrics/adapter, and the saved adapter reproduces the logits."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
import torch
from helpers import CHEAP_EVAL, runs_of
from omegaconf import OmegaConf
from peft import PeftModel

from polylora.errors import ConfigError
from polylora.model.loading import load_base_model
from polylora.run.pipeline import GivenModel, execute, execute_in_fresh_process, run


@pytest.fixture(scope="module")
def smoke_result(compose_module_cfg):
    """One smoke run, read (never changed) by the tests of its model, adapter and record."""
    cfg = compose_module_cfg(["+experiment=smoke"])
    return cfg, execute(cfg)


def test_smoke_trains_lora_only(smoke_result) -> None:
    cfg, result = smoke_result
    fresh, _ = load_base_model(cfg.model, cfg.hardware)
    base = dict(fresh.named_parameters())
    changed_lora = 0
    for name, param in result.model.named_parameters():
        if "lora_" in name:
            # LoRA B starts at zero: any trained B is non-zero.
            if "lora_B" in name and param.abs().sum() > 0:
                changed_lora += 1
        else:
            key = name.replace("base_model.model.", "").replace(".base_layer", "")
            assert torch.equal(param.detach(), base[key].detach()), f"base weight changed: {key}"
    assert changed_lora > 0


def test_adapter_saved_reloads_with_identical_logits(smoke_result) -> None:
    cfg, result = smoke_result
    adapter = result.output_dir / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()
    assert (adapter / "adapter_config.json").is_file()
    fresh, tok = load_base_model(cfg.model, cfg.hardware)
    reloaded = PeftModel.from_pretrained(fresh, adapter).eval()
    ids = tok("Name an English word that starts with 'b'.", return_tensors="pt")
    result.model.eval()
    with torch.no_grad():
        assert torch.equal(result.model(**ids).logits, reloaded(**ids).logits)


def test_mlflow_run_records_everything(smoke_result) -> None:
    cfg, result = smoke_result
    (r,) = runs_of(cfg)
    assert r.info.run_id == result.run_id and r.info.status == "FINISHED"
    assert r.data.params["lora.rank"] == "4"
    assert r.data.params["experiment"] == "smoke"
    assert r.data.params["hardware.resolved_precision"] == "fp32"  # smoke pins fp32
    assert r.data.tags["polylora.group"] == "smoke"
    assert r.data.tags["polylora.objective"] == "ce"
    for key in (
        "eval/loss",
        "eval/perplexity",
        "eval/pass_at_1",
        "eval/accuracy",
        "model/trainable_params",
        "train/final_loss",
        "data/train",
        "run/wall_time_s",
        "run/peak_rss_mb",
        "run/peak_rss_mb_after_load",
        "run/peak_rss_mb_after_train",
        "run/peak_rss_mb_after_eval",
    ):
        assert key in r.data.metrics, key
    peak = r.data.metrics["run/peak_rss_mb"]
    assert 50 < peak < 1e6 and peak >= r.data.metrics["run/peak_rss_mb_after_load"]
    client = mlflow.MlflowClient(cfg.tracking.uri)
    history = client.get_metric_history(r.info.run_id, "train/loss")
    assert len(history) >= 2  # a curve, not a single point
    assert client.get_metric_history(r.info.run_id, "train/eval_gap")
    artifacts = {a.path for a in client.list_artifacts(r.info.run_id)}
    assert {"adapter", "config.yaml", "eval"} <= artifacts
    local = mlflow.artifacts.download_artifacts(
        run_id=r.info.run_id, artifact_path="adapter", tracking_uri=cfg.tracking.uri
    )
    assert (Path(local) / "adapter_model.safetensors").is_file()
    rows = [
        json.loads(x) for x in (result.output_dir / "generations.jsonl").read_text().splitlines()
    ]
    assert len(rows) == cfg.eval.subset_size
    assert all(len(row["samples"]) == cfg.eval.n_samples for row in rows)



def test_mlflow_ui_reads_as_a_training_experiment(smoke_result) -> None:
    """The experiment opens in MLflow's training view, the run is named after what ran, and
    the splits are logged as dataset inputs (names, contexts, row counts)."""
    cfg, result = smoke_result
    client = mlflow.MlflowClient(cfg.tracking.uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    run = client.get_run(result.run_id)
    assert run.info.run_name == f"smoke-s{cfg.seed}"
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {f"{cfg.data.name}-{s}" for s in ("train", "validation", "test")}
    train = inputs[f"{cfg.data.name}-train"]
    assert {t.value for t in train.tags} >= {"train"}
    profile = json.loads(train.dataset.profile)
    assert profile["num_rows"] == run.data.metrics["data/train"] > 0

def test_returns_optimized_metric_and_evaluates_saved_adapter(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg(
        ["+experiment=smoke", "optimized_metric=eval/pass@1"], output_dir=tmp_path / "a"
    )
    value = run(cfg)
    (r,) = runs_of(cfg)
    assert value == pytest.approx(r.data.metrics["eval/pass_at_1"])
    # Evaluate-only from the MLflow artifact gives the same reference loss.
    again = compose_cfg(
        [
            "+experiment=smoke",
            "train.enabled=false",
            f"model.adapter=runs:/{r.info.run_id}/adapter",
            f"tracking.experiment={cfg.tracking.experiment}",
        ],
        output_dir=tmp_path / "b",
    )
    res = execute(again)
    assert res.metrics["eval/test_loss"] == pytest.approx(
        r.data.metrics["eval/test_loss"], rel=1e-5
    )


def test_eval_subset_is_independent_of_training_seed(compose_cfg, tmp_path: Path) -> None:
    ids = []
    for seed in (1, 2):
        cfg = compose_cfg(
            ["+experiment=smoke", f"seed={seed}", "train.max_steps=1", "eval.metrics=[test_loss]"],
            output_dir=tmp_path / str(seed),
        )
        res = execute(cfg)
        rows = (res.output_dir / "generations.jsonl").read_text().splitlines()
        ids.append([json.loads(x)["id"] for x in rows])
    assert ids[0] == ids[1]


def test_failed_run_ends_failed_not_running(compose_cfg, tmp_path: Path, monkeypatch) -> None:
    cfg = compose_cfg(["+experiment=smoke"], output_dir=tmp_path / "f")

    def boom(*args, **kwargs):
        raise RuntimeError("simulated crash during training")

    monkeypatch.setattr("polylora.run.pipeline._train", boom)
    with pytest.raises(RuntimeError):
        execute(cfg)
    (r,) = runs_of(cfg)
    assert r.info.status == "FAILED"
    assert OmegaConf.to_container(cfg.tracking)  # config untouched


# The few-shot prompt itself is checked in tests/data/test_formatting.py; its run repeats the
# zero-shot path and runs under -m slow.
@pytest.mark.parametrize("shots", [0, pytest.param(2, marks=pytest.mark.slow)])
def test_zero_and_few_shot_baselines_are_evaluated_runs(compose_cfg, tmp_path: Path,
                                                        shots: int) -> None:
    cfg = compose_cfg(["+experiment=smoke", "lora=none", "train.enabled=false",
                       f"data.few_shot={shots}"], output_dir=tmp_path / "zs")
    res = execute(cfg)
    (r,) = runs_of(cfg)
    assert r.info.status == "FINISHED"
    assert not (res.output_dir / "adapter").exists()
    assert r.data.metrics["model/trainable_params"] == 0
    assert "eval/pass_at_1" in r.data.metrics and "eval/semantic_diversity" in r.data.metrics
    rows = [json.loads(x) for x in (res.output_dir / "generations.jsonl").read_text().splitlines()]
    assert rows and all(len(row["samples"]) == cfg.eval.n_samples for row in rows)


def test_lora_none_with_training_is_a_clear_error(compose_cfg, tmp_path: Path) -> None:
    from polylora.errors import ConfigError

    cfg = compose_cfg(["+experiment=smoke", "lora=none"], output_dir=tmp_path / "x")
    with pytest.raises(ConfigError, match=r"train\.enabled=false"):
        execute(cfg)


def test_credential_like_keys_are_never_params_but_token_counts_are() -> None:
    from omegaconf import OmegaConf

    from polylora.record.tracking import config_params

    cfg = OmegaConf.create({"eval": {"max_new_tokens": 8}, "hub": {"hf_token": "hf_x"},
                            "judge": {"api_key": "sk-x", "model": "m"}})
    params = config_params(cfg)
    assert params["eval.max_new_tokens"] == "8" and params["judge.model"] == "m"
    assert "hub.hf_token" not in params and "judge.api_key" not in params


def test_validation_metric_is_scored_on_a_fixed_validation_subset(
    compose_cfg, tmp_path: Path
) -> None:
    """optimized_metric=val/pass@1: the test machinery on the validation split (by id), the
    returned value is the validation one, and the final checkpoint is the one evaluated."""
    cfg = compose_cfg(["+experiment=smoke", "optimized_metric=val/pass@1",
                       "eval.val_subset_size=3"], output_dir=tmp_path / "v")
    value = run(cfg)
    (r,) = runs_of(cfg)
    assert value == pytest.approx(r.data.metrics["val/pass_at_1"])
    assert "eval/pass_at_1" in r.data.metrics  # the test metric, reported, not optimized
    val_ids = [json.loads(x)["id"] for x in
               (Path(cfg.output_dir) / "val_generations.jsonl").read_text().splitlines()]
    test_ids = [json.loads(x)["id"] for x in
                (Path(cfg.output_dir) / "generations.jsonl").read_text().splitlines()]
    assert len(val_ids) == 3 and not set(val_ids) & set(test_ids)
    assert r.data.tags["polylora.checkpoint"] == "final"
    assert r.data.metrics["train/evaluated_step"] == r.data.metrics["train/steps"]


def test_validation_metric_without_a_validation_split_is_refused(
    compose_cfg, tmp_path: Path
) -> None:
    from polylora.errors import ConfigError
    from polylora.run.pipeline import prepare

    cfg = compose_cfg(["+experiment=smoke", "optimized_metric=val/pass@1",
                       "data.split.train=0.9", "data.split.val=0.0", "data.split.test=0.1"],
                      output_dir=tmp_path / "n")
    with pytest.raises(ConfigError, match="validation split is empty"):
        prepare(cfg)


def test_auto_precision_trains_and_records_what_this_machine_resolved(
    compose_cfg, tmp_path: Path
) -> None:
    """hardware.autocast=auto (the default) on the real CPU: bf16 where it has avx512_bf16 or
    AMX, fp32 elsewhere; the run finishes and names the precision it used."""
    from polylora.model.loading import cpu_has_native_bf16

    cfg = compose_cfg(["+experiment=smoke", "hardware.autocast=auto", "train.max_steps=2"],
                      output_dir=tmp_path / "auto")
    result = execute(cfg)
    (r,) = runs_of(cfg)
    assert r.info.status == "FINISHED"
    expected = "fp32+autocast-bf16" if cpu_has_native_bf16() else "fp32"
    assert r.data.params["hardware.resolved_precision"] == expected
    assert result.metrics["eval/loss"] > 0


def test_a_given_model_is_evaluated_and_recorded_like_any_run(compose_cfg, tmp_path: Path) -> None:
    """``execute(cfg, given=...)``: the caller's model (here the bare base model) is scored by
    the run's evaluation loop exactly as the config's own would be, with the caller's row
    fields, metrics and tags in the same run; nothing is trained or saved."""
    base_cfg = compose_cfg(["+experiment=smoke", "lora=none", "train.enabled=false",
                            *CHEAP_EVAL.split()], output_dir=tmp_path / "base")
    bare = execute(base_cfg)
    cfg = compose_cfg(["+experiment=smoke", "train.enabled=false", *CHEAP_EVAL.split()],
                      output_dir=tmp_path / "given")
    prepared_tests: list[int] = []

    def build(cfg, prep) -> GivenModel:
        prepared_tests.append(len(prep.splits.test))
        model, tok = load_base_model(cfg.model, cfg.hardware)
        return GivenModel(model, tok, row_fields=lambda pid: {"built_for": pid},
                          metrics={"merge/route_share/0": 1.0})

    res = execute(cfg, given=build, tags={"polylora.merge": "given"})
    r = mlflow.MlflowClient(cfg.tracking.uri).get_run(res.run_id)
    assert prepared_tests and prepared_tests[0] > 0
    assert r.info.status == "FINISHED" and len(runs_of(cfg)) == 2
    assert r.data.tags["polylora.merge"] == "given"
    assert r.data.metrics["merge/route_share/0"] == 1.0
    assert r.data.metrics["eval/test_loss"] == pytest.approx(bare.metrics["eval/test_loss"])
    assert "train/final_loss" not in r.data.metrics
    rows = [json.loads(x) for x in (res.output_dir / "generations.jsonl").read_text().splitlines()]
    assert rows and all(row["built_for"] == row["id"] for row in rows)
    assert (res.output_dir / "mlflow_run_id.txt").read_text() == res.run_id
    assert not (res.output_dir / "adapter").exists()


def test_a_given_model_is_never_trained(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg(["+experiment=smoke"], output_dir=tmp_path / "t")
    with pytest.raises(ConfigError, match=r"set train\.enabled=false"):
        execute(cfg, given=lambda cfg, prep: GivenModel(None, None))
    assert runs_of(cfg) == []


@pytest.mark.slow  # a subprocess end to end; runs in make test-slow
def test_a_fresh_process_runs_the_same_job_and_returns_its_run(compose_cfg,
                                                              tmp_path: Path) -> None:
    """``execute_in_fresh_process``: the run (and its id and metrics) as :func:`execute` makes
    it, without the model; an error in the child is raised here, readable."""
    cfg = compose_cfg(["+experiment=smoke", "lora=none", "train.enabled=false",
                       *CHEAP_EVAL.split()], output_dir=tmp_path / "fresh")
    res = execute_in_fresh_process(cfg)
    (r,) = runs_of(cfg)
    assert res.run_id == r.info.run_id and r.info.status == "FINISHED"
    assert res.model is None and res.output_dir == tmp_path / "fresh"
    assert res.metrics["eval/test_loss"] == pytest.approx(r.data.metrics["eval/test_loss"])
    assert (res.output_dir / "generations.jsonl").is_file()
    bad = compose_cfg(["+experiment=smoke", "lora=none", "train.enabled=false",
                       *CHEAP_EVAL.split(), "optimized_metric=eval/pass@7"],
                      output_dir=tmp_path / "bad")
    with pytest.raises(ConfigError, match="pass@7"):
        execute_in_fresh_process(bad)
