"""The evaluation suite: scores already-generated answers with the requested metrics.

The evaluation pipeline samples n answers (and optionally a greedy one) per prompt, then calls
:func:`score_generations`. Per-prompt scores are kept (for paired statistics across runs) next
to their means. Model-based metrics (loss, perplexity) and the judge are computed elsewhere and
are skipped here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from polylora.checking import Checker, CheckResult
from polylora.data.example import Example
from polylora.errors import ConfigError
from polylora.metrics.diversity import distinct_n, self_bleu, semantic_diversity_from_vectors
from polylora.metrics.embeddings import Embedder, encode_unique
from polylora.metrics.passk import pass_at_k
from polylora.metrics.quality import (
    ROUGE_TYPES,
    bertscore_f1,
    best_reference_similarities,
    rouge_scores,
)
from polylora.metrics.registry import canonical_name, get_metric

METRIC_SETS: dict[str, list[str]] = {
    "quick": [
        "pass@1",
        "pass@3",
        "pass@5",
        "pass@10",
        "accuracy",
        "sample_accuracy",
        "self_bleu",
        "distinct_1",
        "distinct_2",
        "distinct_3",
        "semantic_diversity",
        "rouge_l",
        "embedding_similarity",
    ],
}
METRIC_SETS["full"] = [*METRIC_SETS["quick"], "rouge_1", "rouge_2", "bertscore_f1"]

#: Proportion-like metrics that get a ``<name>_moe`` (95% normal-approximation margin of error
#: over prompts, 1.96·sqrt(p(1-p)/n); conservative for pass@k, whose per-prompt values are not
#: 0/1). Checker detail keys whose values all lie in [0, 1] get one too.
PROPORTION_METRICS: frozenset[str] = frozenset({"accuracy", "sample_accuracy"})
_DIVERSITY_PAIRWISE = frozenset({"self_bleu", "semantic_diversity"})
_DISTINCT = {"distinct_1": 1, "distinct_2": 2, "distinct_3": 3}


@dataclass
class PromptGenerations:
    """One prompt's generations: n sampled answers and, optionally, the greedy answer."""

    example: Example
    samples: list[str]
    greedy: str | None = None


@dataclass
class EvalScores:
    """Suite output. ``per_prompt[i]`` belongs to the prompt with id ``per_prompt_ids[i]``."""

    per_prompt: list[dict[str, float]]
    per_prompt_ids: list[str]
    aggregate: dict[str, float]
    checks: list[list[CheckResult]]  # per prompt, per sample (empty if samples weren't checked)
    greedy_checks: list[CheckResult | None] = field(default_factory=list)


def is_proportion_metric(name: str) -> bool:
    """True for metrics whose aggregate gets a normal-approximation margin of error."""
    return name in PROPORTION_METRICS or name.startswith("pass@")


def margin_of_error(p: float, n: int) -> float:
    """95% margin of error of a proportion ``p`` over ``n`` prompts: 1.96·sqrt(p(1-p)/n)."""
    if n <= 0:
        return math.nan
    p = min(max(p, 0.0), 1.0)
    return 1.96 * math.sqrt(p * (1.0 - p) / n)


def resolve_metric_names(
    metric_names: Iterable[str], ks: Sequence[int] = (1, 3, 5, 10)
) -> list[str]:
    """Canonical, de-duplicated names; ``"pass@k"`` expands to ``pass@<k>`` for each k in ks,
    a preset name (``"quick"``/``"full"``) to its list. Unknown names raise ConfigError."""
    out: list[str] = []
    for raw in metric_names:
        name = canonical_name(raw)
        expanded = (
            METRIC_SETS[name]
            if name in METRIC_SETS
            else [f"pass@{k}" for k in ks]
            if name == "pass@k"
            else [name]
        )
        for item in expanded:
            get_metric(item)  # raises ConfigError listing the known names
            if item not in out:
                out.append(item)
    return out


def _validate(gens: Sequence[PromptGenerations], names: list[str], checker: Checker | None) -> None:
    if not gens:
        raise ConfigError("no generations to score; evaluate at least one prompt")
    needs_checker = [n for n in names if "checker" in get_metric(n).needs]
    if needs_checker and checker is None:
        raise ConfigError(
            f"metric(s) {', '.join(needs_checker)} need a checker but the task has none; "
            "configure one (e.g. checker.type=heuristic) or remove them from eval.metrics"
        )
    if "accuracy" in names:
        missing = [g.example.id for g in gens if g.greedy is None]
        if missing:
            raise ConfigError(
                f"metric 'accuracy' needs a greedy answer per prompt, missing for "
                f"{missing[:3]}; generate greedy answers or remove accuracy from eval.metrics"
            )
    required = [(int(n.split("@")[1]), n) for n in names if n.startswith("pass@")]
    if "sample_accuracy" in names:
        required.append((1, "sample_accuracy"))
    if required:
        need, metric = max(required)
        for g in gens:
            if len(g.samples) < need:
                raise ConfigError(
                    f"{metric} needs at least {need} samples per prompt, prompt "
                    f"{g.example.id!r} has {len(g.samples)}; raise eval.n_samples to ≥ {need} "
                    f"or remove {metric} from eval.metrics"
                )
    pairwise = [n for n in names if n in _DIVERSITY_PAIRWISE]
    if pairwise:
        short = [g.example.id for g in gens if len(g.samples) < 2]
        if short:
            raise ConfigError(
                f"metric(s) {', '.join(pairwise)} compare samples of the same prompt and need "
                f"≥ 2 per prompt (prompt {short[0]!r} has fewer); raise eval.n_samples"
            )
    reference_based = [n for n in names if "references" in get_metric(n).needs]
    if reference_based:
        empty = [g.example.id for g in gens if not g.samples and g.greedy is None]
        if empty:
            raise ConfigError(
                f"metric(s) {', '.join(reference_based)} need at least one answer per prompt; "
                f"prompt {empty[0]!r} has none"
            )


def _scored_answers(g: PromptGenerations) -> list[str]:
    """The answers reference-based metrics average over: the samples, else the greedy one."""
    if g.samples:
        return list(g.samples)
    return [g.greedy] if g.greedy is not None else []


def _check(checker: Checker, example: Example, answers: Sequence[str]) -> list[CheckResult]:
    batch = getattr(checker, "check_batch", None)
    if callable(batch):
        return list(batch([(example, a) for a in answers]))
    return [checker(example, a) for a in answers]


def score_generations(
    gens: Sequence[PromptGenerations],
    metric_names: Iterable[str],
    checker: Checker | None = None,
    ks: Sequence[int] = (1, 3, 5, 10),
    embedder: Embedder | None = None,
    show_progress: bool = True,
) -> EvalScores:
    """Score every prompt's generations with ``metric_names`` and average over prompts.

    Names may carry an ``eval/`` prefix; ``"pass@k"`` means pass@k for each k in ``ks``;
    ``"quick"``/``"full"`` expand to :data:`METRIC_SETS`. Model- and judge-based names (loss,
    perplexity, judge_win_rate) are skipped. Checker details (e.g. per-field accuracy) are
    averaged over each prompt's checked answers and reported under their own keys.
    Reference-based metrics are averaged over the samples (the greedy answer if none).
    Embeddings and BERTScore are computed in one batched call over all prompts.
    """
    names = [n for n in resolve_metric_names(metric_names, ks) if get_metric(n).computed_in_suite]
    gens = list(gens)
    _validate(gens, names, checker)
    wanted = set(names)

    # ---- batched model work (one call each, over all prompts)
    vectors: dict[str, np.ndarray] = {}
    if wanted & {"semantic_diversity", "embedding_similarity"}:
        texts: list[str] = []
        for g in gens:
            if "semantic_diversity" in wanted:
                texts.extend(g.samples)
            if "embedding_similarity" in wanted:
                texts.extend(_scored_answers(g))
                texts.extend(g.example.all_references)
        unique = list(dict.fromkeys(texts))
        matrix = encode_unique(unique, embedder) if unique else np.zeros((0, 0))
        vectors = {t: matrix[i].astype(np.float64) for i, t in enumerate(unique)}
    bert: list[list[float]] = []
    if "bertscore_f1" in wanted:
        flat = [(a, list(g.example.all_references)) for g in gens for a in _scored_answers(g)]
        scores = bertscore_f1([a for a, _ in flat], [r for _, r in flat])
        offset = 0
        for g in gens:
            count = len(_scored_answers(g))
            bert.append(scores[offset : offset + count])
            offset += count

    check_samples = any(n.startswith("pass@") or n == "sample_accuracy" for n in names)
    check_greedy = "accuracy" in wanted
    per_prompt: list[dict[str, float]] = []
    checks: list[list[CheckResult]] = []
    greedy_checks: list[CheckResult | None] = []
    for index, g in enumerate(tqdm(gens, desc="scoring", unit="prompt", disable=not show_progress)):
        row: dict[str, float] = {}
        sample_checks = _check(checker, g.example, g.samples) if checker and check_samples else []
        greedy_check = (
            _check(checker, g.example, [g.greedy])[0]
            if checker and check_greedy and g.greedy is not None
            else None
        )
        checks.append(sample_checks)
        greedy_checks.append(greedy_check)
        correct = [c.correct for c in sample_checks]
        answers = _scored_answers(g)
        refs = list(g.example.all_references)
        rouge: list[dict[str, float]] | None = None
        for name in names:
            if name.startswith("pass@"):
                row[name] = pass_at_k(len(correct), sum(correct), int(name.split("@")[1]))
            elif name == "sample_accuracy":
                row[name] = sum(correct) / len(correct)
            elif name == "accuracy":
                row[name] = float(greedy_check.correct) if greedy_check else math.nan
            elif name == "self_bleu":
                row[name] = self_bleu(g.samples)
            elif name in _DISTINCT:
                row[name] = distinct_n(g.samples, _DISTINCT[name])
            elif name == "semantic_diversity":
                row[name] = semantic_diversity_from_vectors(
                    g.samples, np.stack([vectors[s] for s in g.samples])
                )
            elif name in ROUGE_TYPES:
                if rouge is None:  # all three ROUGE variants from one pass per answer
                    rouge = [rouge_scores(a, refs) for a in answers]
                row[name] = float(np.mean([r[name] for r in rouge]))
            elif name == "bertscore_f1":
                row[name] = float(np.mean(bert[index]))
            elif name == "embedding_similarity":
                sims = best_reference_similarities(answers, [refs] * len(answers), vectors)
                row[name] = float(np.mean(sims))
            else:  # pragma: no cover - registry and this loop out of sync
                raise ConfigError(f"metric {name!r} is registered but the suite cannot compute it")
        detail_source = sample_checks or ([greedy_check] if greedy_check else [])
        for key, value in _mean_details(detail_source).items():
            row[key if key not in wanted else f"checker/{key}"] = value
        per_prompt.append(row)

    return EvalScores(
        per_prompt=per_prompt,
        per_prompt_ids=[g.example.id for g in gens],
        aggregate=_aggregate(per_prompt, names),
        checks=checks,
        greedy_checks=greedy_checks,
    )


def _mean_details(results: Sequence[CheckResult]) -> dict[str, float]:
    """Mean of each detail key over the results that report it."""
    sums: dict[str, list[float]] = {}
    for result in results:
        for key, value in result.details.items():
            sums.setdefault(key, []).append(float(value))
    return {key: sum(values) / len(values) for key, values in sums.items()}


def _aggregate(per_prompt: list[dict[str, float]], names: list[str]) -> dict[str, float]:
    """Mean over prompts of every key; ``<key>_moe`` for proportions and checker details."""
    keys = list(dict.fromkeys(k for row in per_prompt for k in row))
    out: dict[str, float] = {}
    for key in keys:
        values = [row[key] for row in per_prompt if key in row and not math.isnan(row[key])]
        out[key] = float(np.mean(values)) if values else math.nan
        is_detail_rate = key not in names and all(0.0 <= v <= 1.0 for v in values)
        if is_proportion_metric(key) or is_detail_rate:
            out[f"{key}_moe"] = margin_of_error(out[key], len(values))
    return out
