"""Pruning from inside a training job: pruner names and settings, the refusals, and the
callback that reports each evaluation to a real Optuna trial and stops training when the
study's pruner says so; a pruned job lets go of its model before the sweeper hears of it."""

from __future__ import annotations

import gc
import weakref
from types import SimpleNamespace
from typing import Any

import optuna
import pytest
from transformers import TrainerControl

from polylora.errors import ConfigError
from polylora.run import pipeline
from polylora.train import pruning


def test_pruners_by_name_and_by_node() -> None:
    assert pruning.build_pruner(None) is None
    assert isinstance(pruning.build_pruner("median"), optuna.pruners.MedianPruner)
    assert isinstance(pruning.build_pruner("hyperband"), optuna.pruners.HyperbandPruner)
    assert isinstance(pruning.build_pruner("successive_halving"),
                      optuna.pruners.SuccessiveHalvingPruner)
    node = {"_target_": "optuna.pruners.PercentilePruner", "percentile": 10.0,
            "n_startup_trials": 2}
    built = pruning.build_pruner(node)
    assert isinstance(built, optuna.pruners.PercentilePruner)
    assert built._percentile == 10.0 and built._n_startup_trials == 2
    assert node["_target_"] == "optuna.pruners.PercentilePruner"  # the caller's node is kept


@pytest.mark.parametrize(("spec", "message"), [
    ("medain", "hydra.sweeper.pruner=medain is not a pruner; use one of none, median"),
    ({"_target_": "os.system"}, "expected a pruner name"),
    ({"_target_": "optuna.pruners.MedianPruner", "n_warmup": 2}, "(MedianPruner)"),
])
def test_a_bad_pruner_is_one_readable_error(spec: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        pruning.build_pruner(spec)
    assert message in str(info.value)


def test_a_pruner_that_cannot_act_is_refused() -> None:
    pruning.check_prunable(["eval/loss"], "sqlite:///optuna.db")
    pruning.check_prunable(["val/perplexity"], "postgresql://db/optuna")
    with pytest.raises(ConfigError, match="single-objective studies only"):
        pruning.check_prunable(["val/pass@10", "val/semantic_diversity"], "sqlite:///o.db")
    with pytest.raises(ConfigError, match="optimized_metric=val/pass@10 is computed only"):
        pruning.check_prunable(["val/pass@10"], "sqlite:///o.db")
    with pytest.raises(ConfigError, match="needs a database study storage"):
        pruning.check_prunable(["eval/loss"], None)


def _evaluate(callback: pruning.PruningCallback, step: int, loss: float) -> TrainerControl:
    control = TrainerControl()
    callback.on_evaluate(None, SimpleNamespace(global_step=step), control,
                         metrics={"eval_loss": loss})
    return control


def test_each_evaluation_is_reported_and_a_bad_trial_stops() -> None:
    """A real study with Optuna's median pruner: the first trial runs to the end; a second
    whose validation loss is above the first's at the same step stops there."""
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    first = pruning.PruningCallback(study.ask(), "eval/loss")
    for step, loss in [(2, 3.0), (4, 2.5), (6, 2.0)]:
        assert not _evaluate(first, step, loss).should_training_stop
    study.tell(first.trial, 2.0)
    assert study.trials[0].intermediate_values == {2: 3.0, 4: 2.5, 6: 2.0}

    second = pruning.PruningCallback(study.ask(), "eval/loss")
    assert not _evaluate(second, 2, 2.9).should_training_stop  # better than the median
    control = _evaluate(second, 4, 4.0)
    assert control.should_training_stop and not control.should_save
    assert second.pruned and second.pruned_step == 4
    assert second.message() == "trial 1 pruned at step 4 (eval/loss = 4)"
    assert study.trials[1].intermediate_values == {2: 2.9, 4: 4.0}


def test_perplexity_is_reported_as_perplexity() -> None:
    study = optuna.create_study()
    callback = pruning.PruningCallback(study.ask(), "val/perplexity")
    _evaluate(callback, 1, 1.0)
    assert study.trials[0].intermediate_values[1] == pytest.approx(2.718281828)


def test_a_pruned_job_releases_its_model_before_raising(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exception the sweeper receives holds no frame of the job (whose locals hold the
    model): the model is gone by the time the next trial starts."""

    class Model:
        pass

    refs: list[weakref.ref[Model]] = []

    def pruned_job(cfg: object) -> None:
        model = Model()
        refs.append(weakref.ref(model))
        raise optuna.TrialPruned("trial 3 pruned at step 2 (eval/loss = 6)")

    monkeypatch.setattr(pipeline, "execute", pruned_job)
    with pytest.raises(optuna.TrialPruned, match="trial 3 pruned at step 2") as info:
        pipeline.run(SimpleNamespace(optimized_metric="eval/loss"))  # type: ignore[arg-type]
    assert info.value.__context__ is None and info.value.__cause__ is None
    frames = []
    tb = info.value.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "pruned_job" not in frames
    gc.collect()
    assert refs[0]() is None
