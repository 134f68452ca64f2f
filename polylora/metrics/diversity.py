"""Diversity of a set of sampled answers to ONE prompt: self-BLEU, distinct-n, semantic.

The evaluation suite reports the raw metrics; the polychromic objective uses
:func:`set_diversity` (and :func:`set_diversity_batch`), which maps each to a score in [0, 1]
that is 0 for a set of identical samples and high for unrelated ones.

Tokenization (stated once, used everywhere here):

- self-BLEU: sacrebleu's ``13a`` tokenizer on lowercased text (punctuation split off).
- distinct-n: lowercase, then split on whitespace (``str.lower().split()``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from itertools import combinations
from typing import Any, Literal, get_args

import numpy as np

from polylora.data.embeddings import Embedder, encode_unique
from polylora.errors import ConfigError

DiversityMetric = Literal["semantic", "self_bleu", "distinct"]
DIVERSITY_METRICS: tuple[str, ...] = get_args(DiversityMetric)

#: n-gram orders averaged by the ``"distinct"`` set diversity.
DISTINCT_ORDERS: tuple[int, ...] = (1, 2, 3)


# --------------------------------------------------------------------------- self-BLEU


@lru_cache(maxsize=1)
def _bleu() -> Any:
    from sacrebleu.metrics import BLEU

    # Sentence-level settings: BLEU-4, exponential smoothing (Chen & Cherry 2014 method 3,
    # sacrebleu's sentence default), effective order (orders with no n-grams are skipped, so
    # short answers are not zeroed out), 13a tokenization, lowercased.
    return BLEU(
        max_ngram_order=4,
        smooth_method="exp",
        effective_order=True,
        tokenize="13a",
        lowercase=True,
    )


def sentence_bleu(hypothesis: str, references: Sequence[str]) -> float:
    """Sentence BLEU-4 of ``hypothesis`` against ``references`` in [0, 1] (settings above).

    An empty hypothesis scores 1 if some reference is empty too (they are identical), else 0.
    A hypothesis sharing no unigram with any reference scores exactly 0.
    """
    if not hypothesis.strip():
        return 1.0 if any(not r.strip() for r in references) else 0.0
    score = _bleu().sentence_score(hypothesis, list(references)).score / 100.0
    return min(max(score, 0.0), 1.0)


def self_bleu(samples: Sequence[str]) -> float:
    """Mean over samples of BLEU-4 (exp smoothing) with that sample as the hypothesis and the
    OTHER samples of the set as references; in [0, 1], higher = less diverse.

    Returns NaN for fewer than 2 samples (no references); :func:`set_diversity` maps that to 0.
    """
    samples = list(samples)
    if len(samples) < 2:
        return math.nan
    scores = [sentence_bleu(hyp, samples[:i] + samples[i + 1 :]) for i, hyp in enumerate(samples)]
    return float(sum(scores) / len(scores))


# --------------------------------------------------------------------------- distinct-n


def _tokens(text: str) -> list[str]:
    return text.lower().split()


def _ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(samples: Sequence[str], n: int) -> float:
    """Distinct n-grams / total n-grams, pooled over the set (lowercased whitespace tokens).

    0.0 when the set has no n-gram of order n at all (e.g. all answers shorter than n words).
    Note: a set of N identical samples scores 1/N × (within-sample distinct ratio), not 0.
    """
    if n < 1:
        raise ConfigError(f"distinct-n: n must be ≥ 1, got {n}")
    pooled = [g for s in samples for g in _ngrams(_tokens(s), n)]
    if not pooled:
        return 0.0
    return len(set(pooled)) / len(pooled)


def cross_sample_distinct(samples: Sequence[str], n: int) -> float | None:
    """distinct-n rescaled to [0, 1] so that identical samples give 0 and disjoint ones 1.

    With U_i the distinct n-grams of sample i and U the distinct n-grams of the pooled set,
    ``(|U| - max_i |U_i|) / (sum_i |U_i| - max_i |U_i|)``: |U| (= distinct-n × total) can be no
    less than the largest sample's own vocabulary (every sample a copy of it) and no more than
    the sum (no n-gram shared). Repetition inside one sample is not counted as set diversity.
    None when undefined (fewer than two samples have an n-gram of this order).
    """
    per_sample = [set(_ngrams(_tokens(s), n)) for s in samples]
    sizes = [len(u) for u in per_sample]
    if sum(1 for size in sizes if size) < 2:
        return None
    pooled = len(set().union(*per_sample))
    low, high = max(sizes), sum(sizes)
    return (pooled - low) / (high - low)


def normalized_distinct(samples: Sequence[str], orders: Sequence[int] = DISTINCT_ORDERS) -> float:
    """Mean of :func:`cross_sample_distinct` over ``orders`` where defined; 0.0 if none is."""
    values = [v for n in orders if (v := cross_sample_distinct(samples, n)) is not None]
    return float(sum(values) / len(values)) if values else 0.0


# --------------------------------------------------------------------------- semantic


def semantic_diversity_from_vectors(samples: Sequence[str], vectors: np.ndarray) -> float:
    """Mean pairwise cosine distance ``1 - cos`` of unit ``vectors``, each pair clipped to [0, 1].

    Pairs of identical strings (ignoring surrounding whitespace) count as exactly 0. NaN for
    fewer than 2 samples.
    """
    samples = list(samples)
    if len(samples) < 2:
        return math.nan
    vectors = np.asarray(vectors, dtype=np.float64)
    sims = vectors @ vectors.T
    distances = [
        0.0
        if samples[i].strip() == samples[j].strip()
        else float(np.clip(1.0 - sims[i, j], 0.0, 1.0))
        for i, j in combinations(range(len(samples)), 2)
    ]
    return float(sum(distances) / len(distances))


def semantic_diversity(samples: Sequence[str], embedder: Embedder | None = None) -> float:
    """Mean pairwise cosine distance of MiniLM embeddings of ``samples``, in [0, 1].

    NaN for fewer than 2 samples. ``embedder`` defaults to the shared offline MiniLM.
    """
    samples = list(samples)
    if len(samples) < 2:
        return math.nan
    return semantic_diversity_from_vectors(samples, encode_unique(samples, embedder))


# --------------------------------------------------------------------------- set diversity


def _check_metric(metric: str) -> None:
    if metric not in DIVERSITY_METRICS:
        raise ConfigError(
            f"unknown diversity metric {metric!r}; use one of {', '.join(DIVERSITY_METRICS)} "
            "(objective.diversity_metric)"
        )


def _trivial(samples: Sequence[str]) -> bool:
    """Sets with no diversity by construction: empty, one sample, or all samples equal
    (ignoring leading/trailing whitespace)."""
    return len(samples) < 2 or all(s.strip() == samples[0].strip() for s in samples)


def set_diversity(
    samples: Sequence[str],
    metric: DiversityMetric = "semantic",
    embedder: Embedder | None = None,
) -> float:
    """Diversity d(S) ∈ [0, 1] of one prompt's sample set, for the polychromic objective.

    - ``"semantic"``: mean pairwise cosine distance of MiniLM embeddings.
    - ``"self_bleu"``: 1 − self-BLEU (BLEU-4, exp smoothing, see :func:`self_bleu`).
    - ``"distinct"``: :func:`normalized_distinct`, the mean over n = 1, 2, 3 of distinct-n
      rescaled so identical samples give 0 and samples sharing no n-gram give 1.

    An empty set, a single sample, or identical samples give 0.0 on every metric.
    """
    _check_metric(metric)
    samples = list(samples)
    if _trivial(samples):
        return 0.0
    if metric == "semantic":
        return semantic_diversity(samples, embedder)
    if metric == "self_bleu":
        return float(min(max(1.0 - self_bleu(samples), 0.0), 1.0))
    return normalized_distinct(samples)


def set_diversity_batch(
    sample_sets: Sequence[Sequence[str]],
    metric: DiversityMetric = "semantic",
    embedder: Embedder | None = None,
) -> list[float]:
    """:func:`set_diversity` for many prompts at once (one embedding call for ``"semantic"``)."""
    _check_metric(metric)
    sets = [list(s) for s in sample_sets]
    if metric != "semantic":
        return [set_diversity(s, metric) for s in sets]
    needed = [s for s in sets if not _trivial(s)]
    flat = [text for s in needed for text in s]
    vectors = encode_unique(flat, embedder) if flat else np.zeros((0, 0), dtype=np.float32)
    out: list[float] = []
    offset = 0
    for s in sets:
        if _trivial(s):
            out.append(0.0)
            continue
        out.append(semantic_diversity_from_vectors(s, vectors[offset : offset + len(s)]))
        offset += len(s)
    return out
