"""The evaluation suite on hand-made prompts: hand-computed pass@k/accuracy, batching, errors."""

from __future__ import annotations

import math
from typing import Any

import pytest

from polylora.data.checking import CheckResult
from polylora.data.example import Example
from polylora.errors import ConfigError
from polylora.metrics import quality
from polylora.metrics.diversity import distinct_n, self_bleu, semantic_diversity
from polylora.metrics.quality import rouge_scores
from polylora.metrics.registry import get_metric
from polylora.metrics.suite import (
    PromptGenerations,
    margin_of_error,
    metric_set,
    resolve_metric_names,
    score_generations,
)


class ExactChecker:
    """Correct iff the answer equals the example's response; reports a per-field detail."""

    name = "exact"

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, example: Example, answer: str) -> CheckResult:
        self.calls += 1
        return CheckResult(
            correct=answer.strip() == example.response,
            details={"field/first_word": float(answer.split()[:1] == example.response.split()[:1])},
        )


def _gens() -> list[PromptGenerations]:
    a = Example(id="a", prompt="2+2?", response="four")
    b = Example(id="b", prompt="capital of France?", response="Paris")
    c = Example(id="c", prompt="say yes", response="yes")
    return [
        PromptGenerations(a, ["four", "five", "four more", "four"], greedy="four"),  # 2 of 4
        PromptGenerations(b, ["Lyon", "Nice", "Rome", "Berlin"], greedy="Lyon"),  # 0 of 4
        PromptGenerations(c, ["yes", "yes", "yes", "yes"], greedy="yes"),  # 4 of 4
    ]


def test_hand_computed_pass_at_k_and_accuracy() -> None:
    scores = score_generations(
        _gens(),
        ["eval/pass@1", "pass@2", "pass@4", "accuracy", "sample_accuracy"],
        checker=ExactChecker(),
        show_progress=False,
    )
    assert scores.per_prompt_ids == ["a", "b", "c"]
    # prompt a: n=4, c=2 → pass@1 = 1/2, pass@2 = 1 - C(2,2)/C(4,2) = 5/6, pass@4 = 1
    assert scores.per_prompt[0]["pass@1"] == pytest.approx(0.5)
    assert scores.per_prompt[0]["pass@2"] == pytest.approx(5 / 6)
    agg = scores.aggregate
    assert agg["pass@1"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert agg["pass@2"] == pytest.approx((5 / 6 + 0 + 1) / 3)
    assert agg["pass@4"] == pytest.approx(2 / 3)
    assert agg["accuracy"] == pytest.approx(2 / 3)
    assert agg["sample_accuracy"] == pytest.approx(0.5)
    assert agg["accuracy_moe"] == pytest.approx(1.96 * math.sqrt((2 / 3) * (1 / 3) / 3))
    assert "pass@1_moe" in agg and "sample_accuracy_moe" in agg
    # checker details averaged per prompt: prompt a first words: four five four four → 3/4
    assert scores.per_prompt[0]["field/first_word"] == pytest.approx(0.75)
    assert agg["field/first_word"] == pytest.approx((0.75 + 0 + 1) / 3)
    assert "field/first_word_moe" in agg
    # verdicts kept per prompt and sample, greedy separately
    assert [c.correct for c in scores.checks[0]] == [True, False, False, True]
    assert [g.correct for g in scores.greedy_checks if g] == [True, False, True]


def test_pass_at_k_shorthand_and_presets() -> None:
    assert resolve_metric_names(["pass@k"], ks=(1, 2)) == ["pass@1", "pass@2"]
    assert resolve_metric_names(["eval/quick"]) == metric_set("quick")
    assert set(metric_set("full")) == set(metric_set("quick")) | {
        "rouge_1", "rouge_2", "bertscore_f1",
    }  # fmt: skip
    scores = score_generations(
        _gens(), ["pass@k"], checker=ExactChecker(), ks=(1, 3), show_progress=False
    )
    # pass@k at every k up to the samples per prompt (4 for every prompt here) and the
    # sharpening metrics come with any checked evaluation
    curve = {f"pass@{k}{moe}" for k in range(1, 5) for moe in ("", "_moe")}
    assert set(scores.aggregate) == curve | {
        "correct_samples", "distinct_correct", "distinct_per_correct",
        "field/first_word", "field/first_word_moe"}  # fmt: skip


def test_model_based_metrics_are_skipped() -> None:
    scores = score_generations(
        _gens(), ["eval/loss", "perplexity", "distinct_1"], show_progress=False
    )
    assert set(scores.aggregate) == {"distinct_1"}
    assert scores.checks == [[], [], []]


def test_text_metrics_match_standalone_functions(hash_embedder: Any) -> None:
    gens = _gens()
    names = ["self_bleu", "distinct_1", "distinct_2", "semantic_diversity", "rouge_l",
             "embedding_similarity"]  # fmt: skip
    scores = score_generations(gens, names, embedder=hash_embedder, show_progress=False)
    assert len(hash_embedder.calls) == 1  # one batched encode over every prompt
    for g, row in zip(gens, scores.per_prompt, strict=True):
        assert row["self_bleu"] == pytest.approx(self_bleu(g.samples))
        assert row["distinct_1"] == pytest.approx(distinct_n(g.samples, 1))
        assert row["distinct_2"] == pytest.approx(distinct_n(g.samples, 2))
        assert row["semantic_diversity"] == pytest.approx(
            semantic_diversity(g.samples, type(hash_embedder)())
        )
        expected_rouge = sum(rouge_scores(s, [g.example.response])["rouge_l"] for s in g.samples)
        assert row["rouge_l"] == pytest.approx(expected_rouge / len(g.samples))
    # prompt c: identical samples, all equal to the reference
    assert scores.per_prompt[2]["semantic_diversity"] == 0.0
    assert scores.per_prompt[2]["self_bleu"] == pytest.approx(1.0)
    assert scores.per_prompt[2]["embedding_similarity"] == 1.0
    assert "self_bleu_moe" not in scores.aggregate


def test_full_set_end_to_end_with_real_models(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = quality.bertscore_f1

    def counting(samples: list[str], refs: list[list[str]]) -> list[float]:
        calls.append(len(samples))
        return real(samples, refs)

    monkeypatch.setattr(quality, "bertscore_f1", counting)
    gens = [
        PromptGenerations(
            Example(id=f"p{i}", prompt="q", response="the answer is four",
                    references=("the answer is four", "four")),
            [f"the answer is {w}" for w in ("four", "five", "four", "six", "seven", "four",
                                             "nine", "ten", "four", "two")],
            greedy="four",
        )
        for i in range(2)
    ]  # fmt: skip
    scores = score_generations(gens, ["full"], checker=ExactChecker(), show_progress=False)
    assert calls == [20]  # BERTScore batched over all prompts' samples
    full = [n for n in metric_set("full") if get_metric(n).computed_in_suite]
    assert set(full) <= set(scores.aggregate)
    for name in full:
        assert 0.0 <= scores.aggregate[name] <= 1.0, name
    assert scores.aggregate["accuracy"] == 0.0  # greedy "four" ≠ response
    assert scores.aggregate["pass@1"] == pytest.approx(0.4)  # 4 of 10 samples are exact
    assert scores.aggregate["pass@10"] == 1.0


def test_missing_checker_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"pass@1, accuracy need a checker"):
        score_generations(_gens(), ["pass@1", "accuracy", "self_bleu"], show_progress=False)


def test_k_larger_than_samples_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"pass@10 needs at least 10 samples.*eval\.n_samples"):
        score_generations(_gens(), ["quick"], checker=ExactChecker(), show_progress=False)


def test_accuracy_needs_greedy() -> None:
    gens = _gens()
    gens[1].greedy = None
    with pytest.raises(ConfigError, match=r"greedy answer.*'b'"):
        score_generations(gens, ["accuracy"], checker=ExactChecker(), show_progress=False)


def test_pairwise_diversity_needs_two_samples() -> None:
    gens = [PromptGenerations(Example(id="x", prompt="p", response="r"), ["only"])]
    with pytest.raises(ConfigError, match="≥ 2 per prompt"):
        score_generations(gens, ["self_bleu"], show_progress=False)
    scores = score_generations(gens, ["distinct_1", "rouge_1"], show_progress=False)
    assert scores.aggregate["distinct_1"] == 1.0


def test_unknown_metric_and_empty_input() -> None:
    with pytest.raises(ConfigError, match="unknown metric 'bleu'"):
        score_generations(_gens(), ["bleu"], show_progress=False)
    with pytest.raises(ConfigError, match="no generations"):
        score_generations([], ["distinct_1"], show_progress=False)


def test_margin_of_error() -> None:
    assert margin_of_error(0.5, 100) == pytest.approx(1.96 * 0.05)
    assert margin_of_error(1.0, 10) == 0.0
    assert math.isnan(margin_of_error(0.5, 0))
