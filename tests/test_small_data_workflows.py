"""The small-data workflows end to end: the triage experiment (structured fields, group split,
group-balanced batches, size bucket), per-cluster adapters as a multirun over partition values,
and the documented behaviour of partitions and group splits on bad or awkward input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from helpers import REPO, runs_of

from polylora.data.example import Example
from polylora.data.splits import split_examples
from polylora.data.triage import FIELD_NAMES
from polylora.data.triage_source import TriageSource
from polylora.errors import ConfigError, DataError
from polylora.report.diagnose import dataset_size_bucket
from polylora.run.pipeline import execute, prepare

TINY_TRIAGE = [
    "+experiment=triage",
    "model=tiny_random",
    "lora=r4",
    "data.source.n_examples=120",
    "data.max_length=256",
    "train.max_steps=2",
    "train.batch_size=4",
    "train.eval_every=2",
    "train.save_every=2",
    "eval.subset_size=3",
    "eval.n_samples=2",
    "eval.ks=[1,2]",
    "eval.metrics=[test_loss,accuracy,sample_accuracy,pass@1,pass@2]",
    "eval.max_new_tokens=12",
]


def test_triage_experiment_composes(compose_cfg) -> None:
    cfg = compose_cfg(["+experiment=triage"])
    assert cfg.experiment == "triage"
    assert cfg.data.name == "triage" and cfg.eval.name == "fields"
    assert cfg.data.split.group_by == "group"
    assert cfg.data.sampler == "group_balanced"
    assert cfg.data.checker._target_ == "polylora.data.fields.FieldChecker"
    assert list(cfg.data.checker.field_names) == list(FIELD_NAMES)
    assert cfg.model.name == "smollm2_135m"  # the embedded model by default


def test_triage_runs_end_to_end_with_field_accuracy_groups_and_balanced_batches(
    compose_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from polylora.data.samplers import GroupBalancedBatchSampler

    batches: list[list[str]] = []
    original_iter = GroupBalancedBatchSampler.__iter__

    def recording_iter(self):  # type: ignore[no-untyped-def]
        for batch in original_iter(self):
            batches.append([str(self.groups[i]) for i in batch])
            yield batch

    monkeypatch.setattr(GroupBalancedBatchSampler, "__iter__", recording_iter)
    cfg = compose_cfg(TINY_TRIAGE, output_dir=tmp_path / "triage")
    result = execute(cfg)

    # The Trainer drew its batches from the group-balanced sampler: distinct reporters in a
    # batch while at least batch_size reporters still have examples this epoch.
    assert batches, "the group-balanced sampler was not used"
    remaining: dict[str, int] = {}
    for batch in batches:
        for group in batch:
            remaining[group] = remaining.get(group, 0) + 1
    checked = 0
    for batch in batches:
        if sum(1 for n in remaining.values() if n > 0) >= len(batch):
            assert len(set(batch)) == len(batch), batch
            checked += 1
        for group in batch:
            remaining[group] -= 1
    assert checked >= 1

    (run,) = runs_of(cfg)
    metrics = run.data.metrics
    for name in FIELD_NAMES:
        assert 0.0 <= metrics[f"eval/field_acc/{name}"] <= 1.0
        assert f"eval/field_acc/{name}_moe" in metrics
    for key in ("eval/accuracy", "eval/sample_accuracy", "eval/pass_at_2", "eval/test_loss"):
        assert key in metrics, key

    # No reporter in two splits, read from the run's split report: the groups per split add up
    # to the number of distinct reporters only when none is shared.
    report = json.loads((result.output_dir / "split_report.json").read_text())
    assert report["strategy"] == "group" and report["by"] == "group"
    reporters = {e.group for e in TriageSource(n_examples=120).load()}
    assert sum(report["groups"].values()) == len(reporters)
    assert all(n >= 1 for n in report["groups"].values())
    assert metrics["data/groups_train"] == report["groups"]["train"]
    splits = prepare(cfg).splits
    seen = [{e.group for e in part} for part in (splits.train, splits.val, splits.test)]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])

    # The small-data strategy's dataset-size bucket is on every run.
    assert run.data.tags["polylora.dataset_size_bucket"] == dataset_size_bucket(
        report["counts"]["train"]
    )
    assert run.data.tags["polylora.dataset_size_bucket"].startswith("<800")


def _clustered_jsonl(path: Path, per_cluster: int = 12) -> Path:
    words = {"a": ["apple", "apricot", "avocado"], "b": ["banana", "blueberry", "blackberry"]}
    lines = []
    for cluster, options in words.items():
        for i in range(per_cluster):
            record = {
                "id": f"{cluster}{i:02d}",
                "prompt": f"Name a fruit starting with {cluster} number {i}.",
                "response": options[i % 3],
                "cluster": cluster,
            }
            lines.append(json.dumps(record))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_partition_multirun_trains_one_tagged_run_per_value(
    tmp_path: Path, mlflow_uri: str
) -> None:
    data = _clustered_jsonl(tmp_path / "clustered.jsonl")
    experiment = "per-cluster-test"
    sweep_dir = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "polylora",
        "-m",
        "+experiment=per_cluster",
        f"data.path={data}",
        "data.partition_value=a,b",
        "model=tiny_random",
        "lora=r4",
        "data.max_length=48",
        "train.max_steps=2",
        "train.batch_size=4",
        "train.eval_every=1",
        "train.save_every=1",
        "eval.subset_size=2",
        "eval.n_samples=1",
        "eval.ks=[1]",
        "eval.metrics=[test_loss]",
        "eval.greedy=false",
        "eval.max_new_tokens=2",
        f"tracking.uri={mlflow_uri}",
        f"tracking.experiment={experiment}",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]

    client = mlflow.MlflowClient(mlflow_uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 2
    assert all(r.info.status == "FINISHED" for r in runs)
    by_partition = {r.data.tags["polylora.partition"]: r for r in runs}
    assert set(by_partition) == {"cluster=a", "cluster=b"}
    for value in ("a", "b"):
        run = by_partition[f"cluster={value}"]
        assert run.data.tags["polylora.group"] == f"per_cluster/cluster={value}"
        assert run.data.params["data.partition_value"] == value
        # Each adapter saw only its own cluster's examples (12 per cluster).
        assert run.data.metrics["data/total"] == 12
        (folder,) = sweep_dir.glob(f"*_cluster={value}")
        assert (folder / "adapter" / "adapter_config.json").is_file()


def test_per_cluster_experiment_without_partition_is_the_unified_baseline(
    compose_cfg, tmp_path: Path
) -> None:
    data = _clustered_jsonl(tmp_path / "clustered.jsonl", per_cluster=10)
    base = ["+experiment=per_cluster", f"data.path={data}"]
    one = prepare(compose_cfg([*base, "data.partition_value=b"]))
    assert {e.fields["cluster"] for e in one.examples} == {"b"} and len(one.examples) == 10
    unified = prepare(compose_cfg([*base, "data.partition_by=null"]))
    assert len(unified.examples) == 20
    assert unified.checker is None  # plain JSONL: the experiment's metrics need no checker
    from polylora.metrics.registry import get_metric

    cfg = compose_cfg(base)
    assert all("checker" not in get_metric(m).needs for m in cfg.eval.metrics)


def test_partition_by_a_missing_field_is_a_one_line_error(compose_cfg, tmp_path: Path) -> None:
    data = _clustered_jsonl(tmp_path / "clustered.jsonl", per_cluster=3)
    base = ["+experiment=smoke", "data=jsonl", f"data.path={data}"]
    cfg = compose_cfg([*base, "data.partition_by=persona", "data.partition_value=x"])
    with pytest.raises(DataError) as err:
        prepare(cfg)
    message = str(err.value)
    assert "\n" not in message
    assert "persona" in message and "cluster" in message  # names the field and what exists

    cfg = compose_cfg([*base, "data.partition_by=cluster"])
    with pytest.raises(ConfigError, match="partition_value"):
        prepare(cfg)
    cfg = compose_cfg([*base, "data.partition_by=cluster", "data.partition_value=z"])
    with pytest.raises(DataError, match="no example has cluster='z'"):
        prepare(cfg)


def _grouped(sizes: dict[str, int]) -> list[Example]:
    return [
        Example(id=f"{g}-{i}", prompt=f"p {g} {i}", response="r", group=g)
        for g, n in sizes.items()
        for i in range(n)
    ]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_single_example_groups_stay_whole_in_a_three_way_group_split(seed: int) -> None:
    """Documented behaviour: a one-example group is never split (it cannot be) and may be a
    whole val or test split by itself; every requested split still gets at least one group."""
    splits = split_examples(
        _grouped({"g1": 8, "solo1": 1, "solo2": 1, "g4": 6}), 0.8, 0.1, 0.1, seed, group_by="group"
    )
    groups = [set(splits.groups[name]) for name in ("train", "val", "test")]
    assert all(groups)
    assert sum(len(g) for g in groups) == 4  # each group in exactly one split
    for solo in ("solo1", "solo2"):
        assert sum(solo in g for g in groups) == 1
    for name, part in splits.as_dict().items():
        assert {e.group for e in part} == set(splits.groups[name])


def test_fewer_groups_than_requested_splits_is_a_clear_error() -> None:
    with pytest.raises(DataError) as err:
        split_examples(_grouped({"g1": 8, "solo": 1}), 0.8, 0.1, 0.1, 0, group_by="group")
    message = str(err.value)
    assert "\n" not in message
    assert "needs at least 3 groups" in message and "found 2" in message
