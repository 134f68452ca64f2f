"""The builtin metrics: each one's function, inputs, aggregation and direction, declared once.

The registry (:mod:`polylora.metrics.registry`) registers :data:`BUILTIN_METRICS` when it is
imported. Model-based metrics (loss, perplexity) and the judge have no function here: the
evaluation pipeline and the judge compute them; they are declared so their direction is known.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np

from polylora.data.checking import CheckResult
from polylora.metrics import quality
from polylora.metrics.diversity import distinct_n, self_bleu, semantic_diversity_from_vectors
from polylora.metrics.inputs import PromptGenerations
from polylora.metrics.passk import pass_at_k_per_prompt
from polylora.metrics.sharpening import correct_samples, distinct_correct, distinct_per_correct
from polylora.metrics.spec import MetricSpec

_SAMPLES = frozenset({"samples"})
_SAMPLE_REFS = frozenset({"samples", "references"})
_CHECKED = frozenset({"samples", "checker"})
_MODEL = frozenset({"model", "references"})


def pass_at_k_metric(k: int) -> MetricSpec:
    """Unbiased pass@k from the prompt's checked samples (any k ≥ 1)."""

    def compute(sample_checks: list[CheckResult]) -> float:
        return pass_at_k_per_prompt([c.correct for c in sample_checks], k)

    return MetricSpec(
        f"pass@{k}", True, _CHECKED,
        f"unbiased pass@{k} (Chen et al. 2021) from n ≥ {k} checked samples per prompt",
        compute=compute, proportion=True, min_samples=k,
    )  # fmt: skip


def _sample_accuracy(sample_checks: list[CheckResult]) -> float:
    correct = [c.correct for c in sample_checks]
    return sum(correct) / len(correct)


def _accuracy(greedy_check: CheckResult | None) -> float:
    return float(greedy_check.correct) if greedy_check else math.nan


def _distinct(n: int) -> MetricSpec:
    def compute(samples: list[str]) -> float:
        return distinct_n(samples, n)

    label = {1: "unigrams", 2: "bigrams", 3: "trigrams"}[n]
    return MetricSpec(
        f"distinct_{n}", True, _SAMPLES, f"distinct {label} / total {label} per prompt",
        compute=compute, compares_answers=True,
    )  # fmt: skip


def _semantic_diversity(samples: list[str], vectors: Mapping[str, np.ndarray]) -> float:
    return semantic_diversity_from_vectors(samples, np.stack([vectors[s] for s in samples]))


@lru_cache(maxsize=4096)
def _rouge(answer: str, refs: tuple[str, ...]) -> dict[str, float]:
    """All three ROUGE variants of one answer, computed once for rouge_1, rouge_2 and rouge_l."""
    return quality.rouge_scores(answer, list(refs))


def _rouge_metric(variant: str, description: str) -> MetricSpec:
    def compute(answers: list[str], references: list[str]) -> float:
        return float(np.mean([_rouge(a, tuple(references))[variant] for a in answers]))

    return MetricSpec(variant, True, _SAMPLE_REFS, description, compute=compute)


def _bertscore_batch(gens: Sequence[PromptGenerations]) -> list[list[float]]:
    """BERTScore of every prompt's scored answers, in one batched call."""
    flat = [(a, list(g.example.all_references)) for g in gens for a in g.scored_answers]
    scores = quality.bertscore_f1([a for a, _ in flat], [r for _, r in flat])
    out: list[list[float]] = []
    offset = 0
    for g in gens:
        count = len(g.scored_answers)
        out.append(scores[offset : offset + count])
        offset += count
    return out


def _bertscore(batched: list[float]) -> float:
    return float(np.mean(batched))


def _embedding_similarity(
    answers: list[str], references: list[str], vectors: Mapping[str, np.ndarray]
) -> float:
    sims = quality.best_reference_similarities(answers, [references] * len(answers), vectors)
    return float(np.mean(sims))


def _similarity_texts(g: PromptGenerations) -> list[str]:
    return [*g.scored_answers, *g.example.all_references]


BUILTIN_METRICS: list[MetricSpec] = [
    MetricSpec("loss", False, _MODEL,
               "mean token cross-entropy of the reference answers (pipeline)"),
    MetricSpec("test_loss", False, _MODEL,
               "mean response-token cross-entropy on the evaluation subset (pipeline)"),
    MetricSpec("test_perplexity", False, _MODEL, "exp(test_loss) (pipeline)"),
    MetricSpec("perplexity", False, _MODEL, "exp(loss) on the reference answers (pipeline)"),
    MetricSpec("accuracy", True, frozenset({"greedy", "checker"}),
               "fraction of prompts whose greedy answer the checker accepts",
               compute=_accuracy, proportion=True),
    MetricSpec("sample_accuracy", True, _CHECKED,
               "mean checker correctness over the sampled answers, averaged over prompts",
               compute=_sample_accuracy, proportion=True, min_samples=1),
    *(pass_at_k_metric(k) for k in (1, 3, 5, 10)),
    MetricSpec("judge_win_rate", True, frozenset({"samples", "references", "judge"}),
               "fraction of pairwise comparisons an LLM judge awards to this run"),
    MetricSpec("self_bleu", False, _SAMPLES,
               "mean sentence BLEU-4 of each sample against the other samples (lower = more "
               "diverse)", compute=self_bleu, min_samples=2, pairwise=True,
               compares_answers=True),
    *(_distinct(n) for n in (1, 2, 3)),
    MetricSpec("semantic_diversity", True, _SAMPLES,
               "mean pairwise cosine distance of MiniLM embeddings of the samples",
               compute=_semantic_diversity, min_samples=2, pairwise=True,
               embeds=lambda g: list(g.samples), compares_answers=True),
    MetricSpec("correct_samples", True, _CHECKED,
               "how many of a prompt's samples the checker accepts (rises with accuracy)",
               compute=correct_samples, min_samples=1),
    MetricSpec("distinct_correct", True, _CHECKED,
               "different correct answers per prompt, as the checker reads them (rises with "
               "accuracy)", compute=distinct_correct, min_samples=1, compares_answers=True),
    MetricSpec("distinct_per_correct", True, _CHECKED,
               "different correct answers per correct sample (falls when a policy sharpens onto "
               "fewer answers, whatever its accuracy); prompts without a correct sample left out",
               compute=distinct_per_correct, min_samples=1, compares_answers=True),
    _rouge_metric("rouge_1", "ROUGE-1 F1, best over references"),
    _rouge_metric("rouge_2", "ROUGE-2 F1, best over references"),
    _rouge_metric("rouge_l", "ROUGE-L F1, best over references"),
    MetricSpec("bertscore_f1", True, _SAMPLE_REFS,
               "BERTScore F1 with the offline MiniLM encoder, best over references",
               compute=_bertscore, batch=_bertscore_batch),
    MetricSpec("embedding_similarity", True, _SAMPLE_REFS,
               "cosine similarity of MiniLM embeddings, best over references, clipped to [0, 1]",
               compute=_embedding_similarity, embeds=_similarity_texts),
]  # fmt: skip
