"""The polychromic objective's scoring: per-sample quality, set diversity, set score f(S) and
the per-sample set advantages (Hamid et al., ICLR 2026). Sampling, log-probs, scaling, KL and
monitors are the shared core (:mod:`polylora.objectives.sampled`).

``L = L_CE − λ·D(samples)`` has no gradient from D (it is computed from sampled text); here
each sample's share of the set score is its advantage in the core's score-function term.
Quality and diversity come from :mod:`polylora.metrics` (the evaluation's own functions); the
advantage arithmetic is in :mod:`polylora.objectives.advantages`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np

from polylora.data.embeddings import Embedder, encode_unique, get_embedder
from polylora.data.example import Example
from polylora.errors import ConfigError, Problems
from polylora.metrics.diversity import DIVERSITY_METRICS, DiversityMetric, set_diversity
from polylora.metrics.quality import reference_similarity_many
from polylora.objectives.advantages import (
    ADVANTAGES,
    CORRECTNESS_SCORES,
    SET_BASELINES,
    SET_SCORES,
    AdvantageKind,
    SetBaselineKind,
    SetScoreKind,
    Subset,
    add_set_advantages,
    compute_advantages,
    subset_scorer,
)
from polylora.objectives.checker_rewards import checker_rewards
from polylora.objectives.monitors import MonitorWarning, TrainingMonitor, emit_warning
from polylora.objectives.sampled import SampledSetObjective, SetScores
from polylora.record.names import TRAIN_SET_SCORE

__all__ = ["MonitorWarning", "PolychromicObjective", "TrainingMonitor", "emit_warning"]

log = logging.getLogger(__name__)

QUALITIES: tuple[str, ...] = ("checker", "reference_similarity", "none")


class _LookupEmbedder:
    """Vectors computed in ONE encode call per step, then looked up: lets the shared
    ``set_diversity`` / ``reference_similarity_many`` run on every subset of every set
    without re-encoding (unknown texts fall back to the real embedder)."""

    def __init__(self, texts: Sequence[str], base: Embedder,
                 known: dict[str, np.ndarray] | None = None) -> None:
        self.base = base
        self.table: dict[str, np.ndarray] = dict(known or {})
        todo = [t for t in dict.fromkeys(texts) if t not in self.table]
        if todo:
            self.table.update(zip(todo, encode_unique(todo, base), strict=True))

    def encode(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.table]
        if missing:
            self.table.update(zip(missing, np.asarray(self.base.encode(missing)), strict=True))
        if not texts:
            dim = next(iter(self.table.values())).shape[-1] if self.table else 0
            return np.zeros((0, dim), dtype=np.float32)
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


class PolychromicObjective(SampledSetObjective):
    """CE + λ · set-advantage policy-gradient term (+ β · KL to the base model).

    Args mirror ``polylora/conf/objective/polychromic.yaml``; ``docs/objective.md`` explains
    each and its cost; the core's arguments (``ce_weight``, ``advantage_norm``, ...) pass through.
    ``embedder`` replaces the shared MiniLM (tests pass a fake one).
    """

    name = "polychromic"

    def __init__(
        self,
        pg_weight: float = 0.3,
        n_generations: int = 3,
        diversity_metric: DiversityMetric = "semantic",
        quality: str = "checker",
        set_score: SetScoreKind = "polychromic",
        advantage: AdvantageKind = "marginal",
        set_baseline: SetBaselineKind = "none",
        embedder: Embedder | None = None,
        diversity_weight: float | None = None,
        **core: Any,
    ) -> None:
        p = "objective."
        if diversity_weight is not None:  # the name λ had before every RL objective shared one
            log.warning("objective.diversity_weight is the old name of objective.pg_weight (λ, "
                        "one name for every RL objective); using %s, rename it", diversity_weight)
            pg_weight = diversity_weight
        found = Problems()
        need = found.check  # records the message when the condition fails
        need(diversity_metric in DIVERSITY_METRICS,
             f"{p}diversity_metric={diversity_metric!r} is unknown; use one of "
             f"{', '.join(DIVERSITY_METRICS)}")
        need(quality in QUALITIES,
             f"{p}quality={quality!r} is unknown; use one of {', '.join(QUALITIES)}")
        need(set_score in SET_SCORES,
             f"{p}set_score={set_score!r} is unknown; use one of {', '.join(SET_SCORES)}")
        need(set_score not in CORRECTNESS_SCORES or quality == "checker",
             f"{p}set_score={set_score} counts correct answers and needs "
             f"{p}quality=checker, got {quality!r}; use set_score=polychromic otherwise")
        need(advantage in ADVANTAGES,
             f"{p}advantage={advantage!r} is unknown; use one of {', '.join(ADVANTAGES)}")
        need(set_baseline in SET_BASELINES,
             f"{p}set_baseline={set_baseline!r} is unknown; use one of "
             f"{', '.join(SET_BASELINES)}")
        found.raise_any()
        super().__init__(pg_weight=pg_weight, n_generations=n_generations, **core)
        self.diversity_weight = self.pg_weight
        self.diversity_metric = diversity_metric
        self.quality = quality
        self.set_score = set_score
        self.advantage = advantage
        self.set_baseline = set_baseline
        self.embedder = embedder
        self.needs_checker = quality == "checker"
        self._reference_vectors: dict[str, np.ndarray] = {}
        if self.pg_weight > 0 and n_generations == 2 and set_baseline == "none":
            log.warning(
                "objective.n_generations=2: one pair per prompt, so both samples share its "
                "diversity equally and the within-set advantages carry no diversity signal "
                "(zero under set_score=polychromic); use n_generations >= 3 or "
                "objective.set_baseline=batch (docs/objective.md)"
            )

    def check_data(self, has_checker: bool) -> None:
        """quality=checker needs a task checker (runs before any model loads)."""
        if self.quality == "checker" and not has_checker and self.generates:
            raise ConfigError(
                "objective.quality=checker needs a task checker but the data has none "
                "(data=words has a checker); use objective.quality=reference_similarity for "
                "data without one"
            )

    def bind(self, context: Any) -> None:
        """Keep the context; reference vectors belong to one training set."""
        super().bind(context)
        self._reference_vectors.clear()

    def params(self) -> dict[str, Any]:
        """Every knob, for MLflow params."""
        return {**super().params(), "diversity_metric": self.diversity_metric,
                "quality": self.quality, "set_score": self.set_score,
                "advantage": self.advantage, "set_baseline": self.set_baseline}

    def _qualities(self, examples: Sequence[Example], texts: list[list[str]],
                   embedder: Embedder | None) -> list[list[float]]:
        if self.quality == "none":
            return [[1.0] * len(t) for t in texts]
        if self.quality == "reference_similarity":
            flat = [s for t in texts for s in t]
            refs = [list(e.all_references) for e, t in zip(examples, texts, strict=True)
                    for _ in t]
            scores = reference_similarity_many(flat, refs, embedder)
            out, i = [], 0
            for t in texts:
                out.append(scores[i : i + len(t)])
                i += len(t)
            return out
        if self.context.checker is None:
            raise ConfigError("objective.quality=checker but the data has no checker")
        return checker_rewards(self.context.checker, examples, texts)

    def score_sets(self, examples: Sequence[Example], texts: list[list[str]]) -> SetScores:
        """Quality per sample, diversity and set score per set, advantages per sample.

        At most one embedding call per step (the samples, plus references not seen before:
        those are kept for the run) when the metric or quality needs embeddings; every
        subset's diversity then reuses those vectors.
        """
        embedder: Embedder | None = None
        if self.diversity_metric == "semantic" or self.quality == "reference_similarity":
            needed = [s for t in texts for s in t]
            refs = ([r for e in examples for r in e.all_references]
                    if self.quality == "reference_similarity" else [])
            lookup = _LookupEmbedder(needed + refs, self.embedder or get_embedder(),
                                     self._reference_vectors)
            # References are fixed per example: encode each once per training run.
            self._reference_vectors.update((r, lookup.table[r]) for r in refs)
            embedder = lookup
        qualities = self._qualities(examples, texts, embedder)
        diversities, set_scores, advantages = [], [], []
        for samples, q in zip(texts, qualities, strict=True):

            @cache
            def diversity_of(subset: Subset, samples: list[str] = samples) -> float:
                return set_diversity([samples[i] for i in subset], self.diversity_metric,
                                     embedder)

            keys = [s.strip().lower() for s in samples]
            f = subset_scorer(q, diversity_of, self.set_score, keys)
            full = tuple(range(len(samples)))
            diversities.append(diversity_of(full))
            set_scores.append(f(full))
            advantages.append(compute_advantages(len(samples), f, self.advantage))
        if self.set_baseline == "batch":
            advantages = add_set_advantages(advantages, set_scores)
        return SetScores(advantages=advantages, qualities=qualities, diversities=diversities,
                         set_scores=set_scores,
                         metrics={TRAIN_SET_SCORE: float(np.mean(set_scores))})

    def score(self, examples: Sequence[Example], texts: list[list[str]]) -> SetScores:
        """Alias of :meth:`score_sets` (the raw, unscaled advantages)."""
        return self.score_sets(examples, texts)
