"""A learning-rate search with a pruner against the same search without one: real Hydra
multiruns in subprocesses on the tiny model, real sqlite Optuna and MLflow stores.

The grid holds one learning rate that learns and three that cannot (1e-9..3e-9); its seed
puts the one that learns first, so Optuna's median pruner (one startup trial) has it to
compare with. Work done is compared as training steps, not wall-clock time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from polylora.sweep import tags

from .test_polylora_sweeper import load_study, mlflow_runs, sweep

LR_SEARCH = ["+experiment=smoke", "+hparams_search=lr", "train.max_steps=8",
             "train.eval_every=2", "train.save_every=8", "eval.enabled=false",
             "hydra/sweeper/sampler=grid", "hydra.sweeper.sampler.seed=5",
             "train.learning_rate=choice(3e-2,1e-9,2e-9,3e-9)", "hardware.price_per_hour=2.0"]
PRUNER = ["hydra/sweeper/pruner=median", "hydra.sweeper.pruner.n_startup_trials=1"]


def _children(cwd: Path) -> tuple[object, list[object]]:
    runs = mlflow_runs(cwd)
    (parent,) = [r for r in runs if r.data.tags.get(tags.ROLE_TAG) == "sweep"]
    children = [r for r in runs if r.data.tags.get(tags.PARENT_TAG) == parent.info.run_id]
    return parent, children


@pytest.mark.slow
def test_pruning_trains_fewer_steps_and_keeps_the_best_trial(tmp_path: Path) -> None:
    full_dir, pruned_dir = tmp_path / "full", tmp_path / "pruned"
    full_dir.mkdir()
    pruned_dir.mkdir()
    full = sweep(full_dir, *LR_SEARCH)
    assert full.returncode == 0, full.stderr[-3000:]
    pruned = sweep(pruned_dir, *LR_SEARCH, *PRUNER)
    assert pruned.returncode == 0, pruned.stderr[-3000:]
    assert "Error executing job" not in pruned.stderr  # a pruned trial is no error

    full_study, pruned_study = load_study(full_dir), load_study(pruned_dir)
    assert [t.state.name for t in full_study.trials] == ["COMPLETE"] * 4
    assert [t.state.name for t in pruned_study.trials] == ["COMPLETE"] + ["PRUNED"] * 3
    assert pruned_study.best_trial.params == full_study.best_trial.params == {
        "train.learning_rate": 0.03}
    assert pruned_study.best_value == pytest.approx(full_study.best_value, rel=1e-5)
    for trial in pruned_study.trials[1:]:
        assert trial.params["train.learning_rate"] < 1e-8
        assert list(trial.intermediate_values) == [2]  # stopped at its first evaluation
        assert trial.value == trial.intermediate_values[2]  # Optuna: the last reported value

    full_parent, full_children = _children(full_dir)
    parent, children = _children(pruned_dir)
    steps_full = sum(r.data.metrics["train/steps"] for r in full_children)
    steps_pruned = sum(r.data.metrics["train/steps"] for r in children)
    assert steps_full == 4 * 8 and steps_pruned == 8 + 3 * 2
    by_trial = {r.data.tags[tags.TRIAL_TAG]: r for r in children}
    assert by_trial["0"].info.status == "FINISHED"
    for number in "123":
        run = by_trial[number]
        assert run.info.status == "KILLED"
        assert run.data.tags["polylora.trial_state"] == "PRUNED"
        assert run.data.tags["polylora.pruned_step"] == "2"
        assert run.data.metrics["run/cost_usd"] > 0
    # the parent run holds the study's totals
    assert parent.data.metrics["trials/pruned"] == 3
    assert parent.data.metrics["study/steps"] == steps_pruned
    assert full_parent.data.metrics["study/steps"] == steps_full
    total = sum(r.data.metrics["run/cost_usd"] for r in children)
    assert parent.data.metrics["study/cost_usd"] == pytest.approx(total)
    assert parent.data.metrics["study/cost_per_finished_trial_usd"] == pytest.approx(total)
    assert parent.data.metrics["study/train_tokens_per_s"] > 0
    summary = (pruned_dir / "multirun" / "smoke-lr" / tags.SUMMARY_MD).read_text()
    assert summary.count("| PRUNED |") == 3
    assert "Trials: 1 COMPLETE, 3 PRUNED. Steps trained: 14." in summary
    assert f"Cost: ${total:.4f} in all, ${total:.4f} per finished trial" in summary
    assert "tokens/s" in summary
