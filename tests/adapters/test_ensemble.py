"""An ensemble of adapters as one sampler (``eval.ensemble``): the round-robin spread, and two
smoke adapters trained on the tiny model, evaluated together as an evaluation-only run tagged
with its members and grouped beside them (a real MLflow store)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import runs_of

from polylora.adapters import ensemble
from polylora.errors import ConfigError
from polylora.record.reader import group_runs
from polylora.run.pipeline import execute, run


def test_round_robin_spread() -> None:
    assert [ensemble.sample_owner(i, 3) for i in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    assert ensemble.member_counts(7, 3) == [3, 2, 2]
    assert ensemble.member_counts(4, 2) == [2, 2]
    assert sum(ensemble.member_counts(10, 4)) == 10
    assert ensemble.member_run_ids(["runs:/abc/adapter", "/tmp/x/adapter"]) == ["abc"]


def test_too_few_members_or_samples_are_refused() -> None:
    with pytest.raises(ConfigError, match="needs two or more"):
        ensemble.check_ensemble(["runs:/a/adapter"], 4)
    with pytest.raises(ConfigError, match=r"eval\.n_samples=2 is fewer than the 3 adapters"):
        ensemble.check_ensemble(["a", "b", "c"], 2)


@pytest.mark.slow
def test_two_adapters_sampled_as_one(compose_cfg, tmp_path: Path) -> None:
    members = []
    for seed in (1, 2):
        cfg = compose_cfg(["+experiment=smoke", f"seed={seed}", "train.max_steps=2",
                           "train.eval_every=2", "train.save_every=2", "eval.enabled=false"],
                          output_dir=tmp_path / f"member{seed}")
        members.append(execute(cfg).run_id)
    refs = [f"runs:/{m}/adapter" for m in members]
    cfg = compose_cfg(["+experiment=smoke", f"eval.ensemble=[{','.join(refs)}]",
                       "optimized_metric=eval/pass@4"], output_dir=tmp_path / "ensemble")
    value = run(cfg)
    runs = {r.info.run_id: r for r in runs_of(cfg)}
    (ens,) = [r for r in runs.values() if r.info.run_id not in members]
    assert ens.info.status == "FINISHED"
    assert value == ens.data.metrics["eval/pass_at_4"]
    tags = ens.data.tags
    assert tags["polylora.merge"] == "ensemble"
    assert tags["polylora.merge.sources"] == ",".join(refs)
    assert tags["polylora.ensemble.member_runs"] == ",".join(members)
    assert "test_loss" in tags["polylora.metrics_left_out"]
    for key in ("eval/pass_at_1", "eval/pass_at_4", "eval/self_bleu", "eval/distinct_2",
                "eval/semantic_diversity", "eval/accuracy", "run/cost_usd"):
        assert key in ens.data.metrics, key
    assert "eval/test_loss" not in ens.data.metrics
    assert "train/steps" not in ens.data.metrics  # evaluation only
    rows = [json.loads(x) for x in
            (tmp_path / "ensemble" / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == cfg.eval.subset_size
    for row in rows:
        assert len(row["samples"]) == cfg.eval.n_samples == 4
        assert row["sample_adapters"] == [0, 1, 0, 1]
    # polylora compare groups it beside its members
    from polylora.record.reader import get_client, select_runs

    selected = select_runs(get_client(cfg.tracking.uri), cfg.tracking.experiment)
    grouped, _ = group_runs(selected, "polylora.group")
    assert sorted(grouped) == ["smoke", "smoke-ensemble"]
    assert sorted(r.run_id for r in grouped["smoke"]) == sorted(members)
