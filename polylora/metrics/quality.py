"""Reference-based quality of generated answers: ROUGE, BERTScore, embedding similarity.

Every score is the best over the example's references (an answer is as good as the closest
acceptable answer). All models load from local folders: nothing here touches a hub.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from polylora.data.embeddings import Embedder, encode_unique, minilm_path
from polylora.errors import DataError

ROUGE_TYPES: dict[str, str] = {"rouge_1": "rouge1", "rouge_2": "rouge2", "rouge_l": "rougeL"}

#: Layer of all-MiniLM-L6-v2 whose token embeddings BERTScore compares. The model has 6
#: layers; bert-score has no tuned layer for it, so the last (the one trained for sentence
#: similarity) is used. No baseline rescaling (bert-score ships no baseline for this model), so
#: F1 values are high (~0.3 unrelated, 1.0 identical): compare runs, not absolute numbers.
BERTSCORE_NUM_LAYERS = 6


def _check_references(references: Sequence[str]) -> list[str]:
    refs = [references] if isinstance(references, str) else list(references)
    if not refs:
        raise DataError(
            "a reference-based metric got an example with no reference; give each example a "
            "response or references, or drop rouge/bertscore/embedding_similarity from eval.metrics"
        )
    return refs


# --------------------------------------------------------------------------- ROUGE


@lru_cache(maxsize=4)
def _rouge_scorer(types: tuple[str, ...], use_stemmer: bool) -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(types), use_stemmer=use_stemmer)


def rouge_scores(
    sample: str, references: Sequence[str], use_stemmer: bool = False
) -> dict[str, float]:
    """ROUGE-1/2/L F1 of ``sample``, each the best over ``references``.

    Keys ``rouge_1``, ``rouge_2``, ``rouge_l``. rouge-score's own tokenizer (lowercase,
    non-alphanumerics dropped); no stemming by default (rouge-score's default).
    """
    refs = _check_references(references)
    scorer = _rouge_scorer(tuple(ROUGE_TYPES.values()), use_stemmer)
    best = scorer.score_multi(refs, sample)
    return {name: float(best[rtype].fmeasure) for name, rtype in ROUGE_TYPES.items()}


# --------------------------------------------------------------------------- BERTScore

_BERT_SCORER: Any = None
_BERT_LOCK = threading.Lock()


def _bert_scorer() -> Any:
    """bert-score's scorer on the local MiniLM folder (loaded once, CPU, no idf, no rescale)."""
    global _BERT_SCORER
    if _BERT_SCORER is None:
        with _BERT_LOCK:
            if _BERT_SCORER is None:
                from bert_score import BERTScorer

                _BERT_SCORER = BERTScorer(
                    model_type=str(minilm_path()),
                    num_layers=BERTSCORE_NUM_LAYERS,
                    device="cpu",
                    lang=None,
                    idf=False,
                    rescale_with_baseline=False,
                )
    return _BERT_SCORER


def bertscore_f1(
    samples: Sequence[str], references: Sequence[Sequence[str]], batch_size: int = 64
) -> list[float]:
    """BERTScore F1 of each sample against its own reference list (best over references).

    ``references[i]`` are the references of ``samples[i]``. One batched model pass for all.
    An empty sample scores 0.
    """
    samples = list(samples)
    if len(samples) != len(references):
        raise ValueError("bertscore_f1: need one reference list per sample")
    refs = [_check_references(r) for r in references]
    out = [0.0] * len(samples)
    keep = [i for i, s in enumerate(samples) if s.strip()]
    if not keep:
        return out
    _, _, f1 = _bert_scorer().score(
        [samples[i] for i in keep], [refs[i] for i in keep], batch_size=batch_size
    )
    for i, value in zip(keep, f1.tolist(), strict=True):
        out[i] = float(value)
    return out


# --------------------------------------------------------------------------- embeddings


def best_reference_similarities(
    samples: Sequence[str],
    references: Sequence[Sequence[str]],
    vectors: Mapping[str, np.ndarray],
) -> list[float]:
    """Per sample: max cosine to its references from precomputed unit ``vectors`` (text → row),
    clipped to [0, 1]; a sample equal to one of its references scores exactly 1."""
    out = []
    for sample, refs in zip(samples, references, strict=True):
        if sample in refs:
            out.append(1.0)
            continue
        sims = np.stack([vectors[r] for r in refs]) @ vectors[sample]
        out.append(float(np.clip(sims.max(), 0.0, 1.0)))
    return out


def reference_similarity_many(
    samples: Sequence[str],
    references: Sequence[Sequence[str]],
    embedder: Embedder | None = None,
) -> list[float]:
    """Per-sample embedding similarity where ``references[i]`` belongs to ``samples[i]``.

    Cosine of MiniLM embeddings, max over references, negative cosines clipped to 0, so the
    score is in [0, 1] (1 = same meaning). One encode call over all distinct texts.
    """
    samples = list(samples)
    if len(samples) != len(references):
        raise ValueError("reference_similarity_many: need one reference list per sample")
    refs = [_check_references(r) for r in references]
    texts = list(dict.fromkeys([*samples, *(r for group in refs for r in group)]))
    if not texts:
        return []
    matrix = encode_unique(texts, embedder)
    vectors = {t: matrix[i].astype(np.float64) for i, t in enumerate(texts)}
    return best_reference_similarities(samples, refs, vectors)


def reference_similarity(
    samples: Sequence[str], references: Sequence[str], embedder: Embedder | None = None
) -> list[float]:
    """Quality q_i ∈ [0, 1] of each sample of ONE prompt: embedding similarity to its closest
    reference. The polychromic objective's per-sample quality when the task has no checker.
    """
    refs = _check_references(references)
    return reference_similarity_many(list(samples), [refs] * len(samples), embedder)


def embedding_similarity(
    sample: str, references: Sequence[str], embedder: Embedder | None = None
) -> float:
    """Cosine similarity of MiniLM embeddings of ``sample`` and its closest reference, in [0, 1]."""
    return reference_similarity([sample], references, embedder)[0]
