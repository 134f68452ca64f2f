"""GRPO (pass@1 RL) advantages by hand, its config errors, and λ = 0 being CE exactly."""

from __future__ import annotations

import pytest
import torch
from objectives.test_polychromic import context, lora_grads, lora_model, make_batch

from polylora.data.words import WordChecker, WordTask
from polylora.errors import ConfigError
from polylora.objectives.advantages import normalize_advantages
from polylora.objectives.ce import CrossEntropyObjective
from polylora.objectives.grpo import GRPOObjective, grpo_advantages


def test_grpo_advantages_by_hand() -> None:
    raw = grpo_advantages([1.0, 0.0, 0.0, 1.0])
    assert raw == [0.5, -0.5, -0.5, 0.5]
    # GRPO: divided by the group's sample std sqrt(4 · 0.25 / 3) = 0.57735 (+1e-4)
    scaled = normalize_advantages([raw], "group_std")[0]
    assert scaled == pytest.approx([0.866, -0.866, -0.866, 0.866], abs=2e-4)
    # Dr. GRPO: no std scaling.
    assert normalize_advantages([raw], "none")[0] == raw
    assert grpo_advantages([1.0, 1.0, 1.0]) == [0.0, 0.0, 0.0]  # all right: no signal
    assert grpo_advantages([1.0, 0.0, 0.0]) == pytest.approx([2 / 3, -1 / 3, -1 / 3])


def test_grpo_scores_with_the_checker() -> None:
    _, tok = lora_model()
    examples = WordTask(n_examples=1, seed=0).load()
    obj = GRPOObjective(n_generations=3)
    obj.bind(context(tok, WordChecker()))
    right = examples[0].response
    scored = obj.score_sets(examples, [[right, "zzzz", right]])
    assert scored.qualities == [[1.0, 0.0, 1.0]]
    assert scored.advantages == [pytest.approx([1 / 3, -2 / 3, 1 / 3])]


def test_grpo_needs_a_checker_one_line() -> None:
    with pytest.raises(ConfigError, match="objective grpo rewards correct answers"):
        GRPOObjective().check_data(has_checker=False)
    GRPOObjective(pg_weight=0.0).check_data(has_checker=False)  # CE only: fine


@pytest.mark.parametrize("cls_kwargs", [{"pg_weight": 0.0}, {"pg_weight": 0.0, "k": 2}])
def test_lambda_zero_ce_weight_one_is_exactly_ce(cls_kwargs: dict) -> None:
    from polylora.objectives.passk import PassKObjective

    cls = PassKObjective if "k" in cls_kwargs else GRPOObjective
    model, tok = lora_model()
    ctx = context(tok, WordChecker())
    batch = make_batch(ctx)
    ce_loss = CrossEntropyObjective().compute_loss(model, batch, None, 1).loss
    ce = lora_grads(model, ce_loss)
    obj = cls(ce_weight=1.0, **cls_kwargs)
    obj.bind(ctx)
    obj.generate = lambda *a: pytest.fail("λ = 0 must not sample")  # type: ignore[method-assign]
    out = obj.compute_loss(model, batch, None, 1)
    assert torch.equal(out.loss, ce_loss)
    got = lora_grads(model, out.loss)
    assert all(torch.equal(got[k], ce[k]) for k in ce)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"top_p": 0.9}, "objective.top_p=0.9 is not supported by the policy-gradient term"),
        ({"ce_weight": 0.0, "pg_weight": 0.0}, "nothing to train"),
        ({"ce_weight": 0.0, "generate_every": 2}, "needs objective.generate_every=1"),
        ({"advantage_norm": "mean"}, "objective.advantage_norm='mean' is unknown"),
        ({"pg_normalizer": "tokens"}, "objective.pg_normalizer='tokens' is unknown"),
        ({"kl_estimator": "k3"}, "reverse KL"),
        ({"ce_weight": -1}, "objective.ce_weight must be a number >= 0"),
    ],
)
def test_core_config_errors_are_one_line(kwargs: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        GRPOObjective(**kwargs)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_every_bad_setting_is_listed_in_one_error() -> None:
    with pytest.raises(ConfigError) as err:
        GRPOObjective(temperature=0, micro_batch=0, ce_weight="x")
    message = str(err.value)
    assert message.startswith("3 problems in the config:") and "\n" not in message
    for needle in ("objective.ce_weight must be a number >= 0, got 'x'",
                   "objective.temperature must be > 0", "objective.micro_batch must be an "
                   "integer >= 1"):
        assert needle in message
