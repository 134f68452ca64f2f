"""The run record end to end: the real pipeline writes a run (tiny model), the reader loads it
back as a typed object by the record's own names, and what it reads equals what was written."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from polylora.data.size_buckets import dataset_size_bucket
from polylora.record import names, reader, writer
from polylora.run.pipeline import execute, prepare

#: Cheap smoke evaluation: no embedding metrics, still pass@k and the test loss.
CHEAP = ["eval.metrics=[test_loss,accuracy,pass@1,pass@2]", "eval.ks=[1,2]"]


@pytest.fixture
def written(compose_cfg, tmp_path: Path):
    cfg = compose_cfg(["+experiment=smoke", *CHEAP], output_dir=tmp_path / "run")
    return cfg, execute(cfg)


def test_a_pipeline_run_reads_back_through_the_record(written) -> None:
    cfg, result = written
    client = reader.get_client(cfg.tracking.uri)
    (run,) = reader.select_runs(client, cfg.tracking.experiment)
    assert run.run_id == result.run_id == reader.get_run(client, result.run_id).run_id
    assert run.status == "FINISHED"

    # Tags: the objective's config name, seed, group and the data-size bucket.
    assert run.tags[names.OBJECTIVE_TAG] == "ce" and reader.objective_kind(run) == "ce"
    assert run.seed == str(cfg.seed)
    assert run.tags[names.GROUP_TAG] == "smoke"
    n_train = len(prepare(cfg).splits.train)
    assert reader.train_size(run) == n_train > 0
    assert run.tags[names.DATASET_SIZE_BUCKET_TAG] == dataset_size_bucket(n_train)

    # Files in the output folder under the record's names.
    out = result.output_dir
    for file in (names.CONFIG_FILE, names.METRICS_FILE, names.GENERATIONS_FILE,
                 names.RUN_ID_FILE, names.SPLIT_REPORT_FILE):
        assert (out / file).is_file(), file
    assert (out / names.RUN_ID_FILE).read_text() == result.run_id
    on_disk = writer.read_metrics(out)
    assert on_disk.keys() == result.metrics.keys()
    for key, value in result.metrics.items():  # an undefined metric (NaN) stays NaN
        assert on_disk[key] == value or (math.isnan(on_disk[key]) and math.isnan(value)), key

    # The final eval metrics MLflow holds are metrics.json's, under registry names.
    curve = (names.VAL_LOSS, names.VAL_PERPLEXITY)  # logged at steps, also as a curve
    expected = {
        names.canonical_metric(k): v
        for k, v in on_disk.items()
        if k.startswith(names.EVAL_PREFIX) and not k.endswith(names.MOE_SUFFIX)
        and k not in curve and math.isfinite(v)
    }
    got = reader.eval_metrics(run)
    assert {"pass@1", "pass@2", "accuracy", "test_loss"} <= set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    assert reader.final_value(client, run.run_id, names.VAL_LOSS) == pytest.approx(
        on_disk[names.VAL_LOSS], rel=1e-12)

    # generations.jsonl: the artifact is the file, and its per-prompt scores average to the
    # logged aggregates.
    rows = reader.load_generations(client, run.run_id)
    assert rows is not None
    local = [json.loads(line) for line in (out / names.GENERATIONS_FILE).read_text().splitlines()]
    assert rows == local and len(rows) == cfg.eval.subset_size
    scores = reader.per_prompt_scores(rows)
    test_loss = scores["test_loss"]
    assert sum(test_loss.values()) / len(test_loss) == pytest.approx(got["test_loss"])
    pass1 = scores["pass@1"]
    assert sum(pass1.values()) / len(pass1) == pytest.approx(got["pass@1"])


def test_the_objective_tag_is_the_config_name(compose_cfg, tmp_path: Path) -> None:
    """Outside a Hydra job the config name is found by the objective's ``_target_``."""
    poly = compose_cfg(["+experiment=smoke", "objective=polychromic"], output_dir=tmp_path)
    assert writer.objective_name(poly) == "polychromic"
    assert writer.run_tags(poly)[names.OBJECTIVE_TAG] == "polychromic"
    ce = compose_cfg(["+experiment=smoke"], output_dir=tmp_path)
    assert writer.objective_name(ce) == "ce"


@pytest.mark.parametrize(
    ("raw", "canonical"),
    [("eval/pass_at_10", "pass@10"), ("val/pass@3", "pass@3"), ("pass_at_1", "pass@1"),
     ("eval/self_bleu", "self_bleu"), ("test/accuracy", "accuracy"),
     ("train/final_loss", "train/final_loss"), ("eval/field_acc/answer", "field_acc/answer")],
)
def test_one_normalizer(raw: str, canonical: str) -> None:
    assert names.canonical_metric(raw) == canonical
    # The MLflow spelling of a canonical name normalizes back to it.
    assert names.canonical_metric(names.mlflow_metric_name(canonical)) == canonical
