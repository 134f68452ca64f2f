"""Reference-based quality: ROUGE matches rouge-score, BERTScore and embeddings run offline."""

from __future__ import annotations

from typing import Any

import pytest
from rouge_score import rouge_scorer

from polylora.errors import DataError
from polylora.metrics import quality
from polylora.metrics.quality import (
    bertscore_f1,
    embedding_similarity,
    reference_similarity,
    reference_similarity_many,
    rouge_scores,
)

PAIRS = [
    ("the cat sat on the mat", ["the cat sat on the mat"]),
    ("the cat sat", ["the cat sat on the mat"]),
    ("a quick brown fox jumps", ["the quick brown fox jumped over the dog"]),
    ("nothing in common", ["completely different words"]),
    ("the dog ran home", ["a cat slept", "the dog walked home"]),  # best of two references
]


@pytest.mark.parametrize(("sample", "refs"), PAIRS)
def test_rouge_matches_rouge_score(sample: str, refs: list[str]) -> None:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    per_ref = [scorer.score(r, sample) for r in refs]
    ours = rouge_scores(sample, refs)
    for name, rtype in (("rouge_1", "rouge1"), ("rouge_2", "rouge2"), ("rouge_l", "rougeL")):
        assert ours[name] == pytest.approx(max(s[rtype].fmeasure for s in per_ref))


def test_rouge_hand_computed() -> None:
    # 3 of the 3 sample unigrams match, 3 of 6 reference unigrams: P=1, R=1/2, F=2/3
    rouge_1 = rouge_scores("the cat sat", ["the cat sat on the mat"])["rouge_1"]
    assert rouge_1 == pytest.approx(2 / 3)


def test_missing_references_is_a_data_error() -> None:
    with pytest.raises(DataError, match="no reference"):
        rouge_scores("x", [])
    with pytest.raises(DataError):
        reference_similarity(["x"], [])


def test_embedding_similarity_range_and_order() -> None:
    same = embedding_similarity("The weather is lovely today.", ["The weather is lovely today."])
    close = embedding_similarity("It is a beautiful sunny day.", ["The weather is lovely today."])
    far = embedding_similarity("Compile the kernel with clang.", ["The weather is lovely today."])
    assert same == 1.0
    assert 0.0 <= far < close < 1.0
    # best over references
    both = embedding_similarity("It is a beautiful sunny day.", ["Compile it.", "Lovely weather."])
    assert both == pytest.approx(
        max(
            embedding_similarity("It is a beautiful sunny day.", ["Compile it."]),
            embedding_similarity("It is a beautiful sunny day.", ["Lovely weather."]),
        ),
        abs=1e-6,
    )


def test_reference_similarity_is_one_encode_call(hash_embedder: Any) -> None:
    samples = ["red apple pie", "green apple", "blue car", "red apple pie"]
    refs = ["red apple pie", "apple tart"]
    scores = reference_similarity(samples, refs, hash_embedder)
    assert len(hash_embedder.calls) == 1
    assert scores[0] == scores[3] == 1.0
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[2] == 0.0  # no shared word → orthogonal hash vectors
    many = reference_similarity_many(samples[:2], [refs, ["green", "blue"]], hash_embedder)
    vectors = hash_embedder.encode(["green apple", "green", "blue"])
    expected = max(float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2]))
    assert many == pytest.approx([1.0, min(max(expected, 0.0), 1.0)])


def test_bertscore_properties() -> None:
    ref = ["The cat sat on the mat."]
    scores = bertscore_f1(
        [
            "The cat sat on the mat.",
            "A cat was sitting on a mat.",
            "Stock prices fell sharply.",
            "",
        ],
        [ref, ref, ref, ref],
    )
    identical, paraphrase, unrelated, empty = scores
    assert identical == pytest.approx(1.0, abs=1e-5)
    assert unrelated < paraphrase < identical
    assert empty == 0.0
    multi = bertscore_f1(["A cat was sitting on a mat."], [["Stock prices fell.", ref[0]]])[0]
    assert multi == pytest.approx(paraphrase, abs=1e-5)  # best over references


def test_bertscore_loads_offline(
    network_tripwire: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fresh BERTScorer from the local MiniLM folder with the network refused and recorded."""
    monkeypatch.setattr(quality, "_BERT_SCORER", None)
    score = bertscore_f1(["offline works"], [["offline works"]])[0]
    assert score == pytest.approx(1.0, abs=1e-5)
    assert network_tripwire == []
