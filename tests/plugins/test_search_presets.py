"""The ``<family>_quick`` and ``<family>_full`` search presets: each composes with the
polylora sweeper; quick ones run a handful of trials with the median pruner (except the
two-objective front, which Optuna cannot prune); full ones run the plans' grids, every point
once."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import CONF_DIR

FAMILIES = ["lr", "rank", "lambda", "rank_lambda", "n_generations", "pareto"]


def _compose(search: str) -> object:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from polylora.config import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR)):
        return compose("config", overrides=["+experiment=smoke_polychromic",
                                            f"+hparams_search={search}"],
                       return_hydra_config=True)


def _grid_size(params: object) -> int:
    size = 1
    for value in params.values():  # type: ignore[attr-defined]
        assert value.startswith("choice("), value
        size *= len(value[len("choice("):-1].split(","))
    return size


@pytest.mark.parametrize("family", FAMILIES)
def test_quick_preset_is_small_and_prunes(family: str) -> None:
    from polylora.record.names import optimized_metrics
    from polylora.train.pruning import build_pruner, check_prunable

    cfg = _compose(f"{family}_quick")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("PolyloraOptunaSweeper")
    assert sweeper.study_name == f"smoke_polychromic-{family}_quick"
    assert 2 <= sweeper.n_trials <= 6
    metrics = optimized_metrics(cfg.optimized_metric)
    if family == "pareto":
        assert sweeper.pruner is None and len(metrics) == 2
        return
    assert sweeper.pruner._target_ == "optuna.pruners.MedianPruner"
    assert build_pruner(sweeper.pruner)._n_startup_trials == sweeper.pruner.n_startup_trials
    check_prunable(metrics, sweeper.storage)  # the sweeper would accept it


@pytest.mark.parametrize("family", FAMILIES)
def test_full_preset_is_the_whole_grid_without_pruning(family: str) -> None:
    cfg = _compose(f"{family}_full")
    sweeper = cfg.hydra.sweeper
    assert sweeper.pruner is None
    assert sweeper.sampler._target_.endswith("GridSampler")
    assert sweeper.n_trials == _grid_size(sweeper.params)
    if "rank" in sweeper.params:
        assert cfg.lora.alpha_ratio == 4.0


def test_plans_grids() -> None:
    assert _compose("rank_full").hydra.sweeper.params["lora.rank"] == \
        "choice(2, 4, 8, 12, 16, 24, 32)"
    assert _compose("lr_full").hydra.sweeper.params["train.learning_rate"] == \
        "choice(1e-4, 2e-4, 3e-4, 4e-4)"


def test_every_preset_is_tested() -> None:
    files = {p.stem for p in (CONF_DIR / "hparams_search").glob("*_quick.yaml")}
    files |= {p.stem for p in (CONF_DIR / "hparams_search").glob("*_full.yaml")}
    assert files == {f"{f}_{size}" for f in FAMILIES for size in ("quick", "full")}


@pytest.mark.slow
def test_a_quick_preset_runs_and_prunes(tmp_path: Path) -> None:
    """``+hparams_search=rank_quick`` on the tiny model: three ranks, each evaluated during
    training, the pruner consulted at each evaluation (Optuna holds the reports)."""
    from .test_polylora_sweeper import load_study, sweep

    proc = sweep(tmp_path, "+experiment=smoke", "+hparams_search=rank_quick",
                 "train.max_steps=4", "train.eval_every=2", "train.save_every=4",
                 "eval.enabled=false")
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = load_study(tmp_path, "smoke-rank_quick")
    assert len(study.trials) == 3
    assert {t.params["lora.rank"] for t in study.trials} == {4, 8, 16}
    assert {t.state.name for t in study.trials} <= {"COMPLETE", "PRUNED"}
    assert all(2 in t.intermediate_values for t in study.trials)
    summary = (tmp_path / "multirun" / "smoke-rank_quick" / "summary.md").read_text()
    assert "Trials: " in summary and "Cost: $" in summary
