"""Diversity: identical sets score 0, unrelated sets score high, values match definitions."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
from sacrebleu import sentence_bleu as sacre_sentence_bleu

from polylora.data.embeddings import get_embedder
from polylora.errors import ConfigError
from polylora.metrics.diversity import (
    DIVERSITY_METRICS,
    cross_sample_distinct,
    distinct_n,
    normalized_distinct,
    self_bleu,
    semantic_diversity,
    set_diversity,
    set_diversity_batch,
)

IDENTICAL = ["The cat sat on the mat."] * 4
# no word shared between any two samples (and none repeated inside a sample)
DISJOINT = [
    "purple elephants dance gracefully tonight",
    "quarterly tax filings are due",
    "photosynthesis converts sunlight into sugar",
    "my bicycle chain snapped yesterday",
]
OVERLAPPING = [
    "the cat sat on the mat",
    "the cat sat on the rug",
    "the dog sat on the mat",
    "a cat sat on a mat",
]


@pytest.mark.parametrize("metric", DIVERSITY_METRICS)
def test_identical_samples_have_zero_diversity(metric: str) -> None:
    assert set_diversity(IDENTICAL, metric) == 0.0  # type: ignore[arg-type]


def test_identical_samples_raw_metrics() -> None:
    """Zero also without set_diversity's identical-set shortcut."""
    assert self_bleu(IDENTICAL) == pytest.approx(1.0)
    assert semantic_diversity(IDENTICAL) == 0.0
    assert normalized_distinct(IDENTICAL) == 0.0
    # raw distinct-n of N copies is 1/N (here every unigram but "the" is unique within a copy)
    assert distinct_n(IDENTICAL, 2) == pytest.approx(1 / 4)


def test_disjoint_vocabularies_are_maximal() -> None:
    assert self_bleu(DISJOINT) == 0.0
    for n in (1, 2, 3):
        assert distinct_n(DISJOINT, n) == 1.0
        assert cross_sample_distinct(DISJOINT, n) == 1.0
    assert set_diversity(DISJOINT, "self_bleu") == 1.0
    assert set_diversity(DISJOINT, "distinct") == 1.0
    assert set_diversity(DISJOINT, "semantic") > 0.7


@pytest.mark.parametrize("metric", DIVERSITY_METRICS)
def test_partial_overlap_is_in_between(metric: str) -> None:
    low = set_diversity(IDENTICAL, metric)  # type: ignore[arg-type]
    mid = set_diversity(OVERLAPPING, metric)  # type: ignore[arg-type]
    high = set_diversity(DISJOINT, metric)  # type: ignore[arg-type]
    assert low < mid < high
    assert 0.0 <= mid <= 1.0


@pytest.mark.parametrize("metric", DIVERSITY_METRICS)
@pytest.mark.parametrize("samples", [[], ["only one"], ["", ""], [" ", ""]])
def test_degenerate_sets_give_zero(metric: str, samples: list[str]) -> None:
    assert set_diversity(samples, metric) == 0.0  # type: ignore[arg-type]


@pytest.mark.parametrize("metric", DIVERSITY_METRICS)
def test_empty_answer_among_others_does_not_crash(metric: str) -> None:
    value = set_diversity(["", "a real answer", "another answer"], metric)  # type: ignore[arg-type]
    assert 0.0 <= value <= 1.0


def test_unknown_metric_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown diversity metric 'bleu'"):
        set_diversity(["a", "b"], "bleu")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        set_diversity([], "bleu")  # type: ignore[arg-type]


def test_self_bleu_definition() -> None:
    """Each sample vs the others, sacrebleu BLEU-4, exp smoothing, lowercased, in [0, 1]."""
    samples = ["The cat sat on the mat", "the cat is on the mat", "a dog ran in the park"]
    expected = [
        sacre_sentence_bleu(
            hyp,
            samples[:i] + samples[i + 1 :],
            smooth_method="exp",
            lowercase=True,
            use_effective_order=True,
        ).score
        / 100
        for i, hyp in enumerate(samples)
    ]
    assert self_bleu(samples) == pytest.approx(sum(expected) / 3)
    assert math.isnan(self_bleu(["one sample"]))


def test_distinct_n_hand_computed() -> None:
    samples = ["a b a", "A c"]  # unigrams a b a a c: 3 distinct of 5
    assert distinct_n(samples, 1) == pytest.approx(3 / 5)
    assert distinct_n(samples, 2) == pytest.approx(3 / 3)  # (a b) (b a) (a c)
    assert distinct_n(samples, 3) == pytest.approx(1 / 1)
    assert distinct_n(["short", "words"], 2) == 0.0  # no bigram at all
    with pytest.raises(ConfigError):
        distinct_n(samples, 0)


def test_cross_sample_distinct_hand_computed() -> None:
    samples = ["a b c", "a b d"]  # |U_i| = 3, 3; pooled {a,b,c,d} = 4 → (4-3)/(6-3)
    assert cross_sample_distinct(samples, 1) == pytest.approx(1 / 3)
    assert cross_sample_distinct(samples, 2) == pytest.approx((3 - 2) / (4 - 2))
    assert cross_sample_distinct(["a b", "c"], 2) is None  # only one sample has a bigram
    assert normalized_distinct(["a b", "c"]) == pytest.approx(1.0)  # unigram order only


def test_semantic_diversity_with_injected_embedder(hash_embedder: Any) -> None:
    # disjoint words land in different hash buckets (checked) → orthogonal vectors → distance 1
    vectors = hash_embedder.encode(["alpha", "omega"])
    assert float(vectors[0] @ vectors[1]) == 0.0
    assert semantic_diversity(["alpha", "omega"], hash_embedder) == pytest.approx(1.0)
    assert math.isnan(semantic_diversity(["alpha"], hash_embedder))


def test_batch_uses_one_encode_call_and_matches_single(
    hash_embedder: Any, make_hash_embedder: Callable[[], Any]
) -> None:
    sets = [OVERLAPPING, IDENTICAL, DISJOINT, ["solo"]]
    batched = set_diversity_batch(sets, "semantic", hash_embedder)
    assert len(hash_embedder.calls) == 1
    singles = [set_diversity(s, "semantic", make_hash_embedder()) for s in sets]
    assert batched == pytest.approx(singles)
    for metric in ("self_bleu", "distinct"):
        assert set_diversity_batch(sets, metric) == [set_diversity(s, metric) for s in sets]


def test_real_embedder_scores_paraphrases_as_less_diverse() -> None:
    embedder = get_embedder()
    paraphrases = ["The weather is lovely today.", "It is a beautiful sunny day."]
    unrelated = ["The weather is lovely today.", "Compile the kernel with clang."]
    assert semantic_diversity(paraphrases, embedder) < semantic_diversity(unrelated, embedder)
