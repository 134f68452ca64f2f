"""The evaluation suite: scores already-generated answers with the requested metrics.

The evaluation pipeline samples n answers (and optionally a greedy one) per prompt, then calls
:func:`score_generations`. Each metric's function, inputs and aggregation come from the
registry (:mod:`polylora.metrics.registry`); this module only gathers the inputs (checker
verdicts, one batched embedding pass, each metric's batched step), calls the functions per
prompt and aggregates. Per-prompt scores are kept (for paired statistics across runs) next to
their means. Model-based metrics (loss, perplexity) and the judge are computed elsewhere and
are skipped here. Named metric sets are the ``metrics`` lists of ``conf/eval/<set>.yaml``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from polylora.data.checking import Checker, CheckResult
from polylora.data.embeddings import Embedder, encode_unique
from polylora.data.example import Example
from polylora.errors import ConfigError
from polylora.metrics.inputs import PromptGenerations, PromptInputs
from polylora.metrics.registry import (
    MetricSpec,
    canonical_name,
    get_metric,
    is_proportion_metric,
    registered_in_order,
)
from polylora.metrics.sharpening import SHARPENING_METRICS, curve_ks
from polylora.stats import significance as stats

__all__ = [
    "EvalScores", "PromptGenerations", "is_proportion_metric", "margin_of_error",
    "metric_set", "resolve_metric_names", "score_generations",
]  # fmt: skip

#: Where named metric sets live: ``conf/eval/<name>.yaml``'s ``metrics`` list.
EVAL_CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "eval"


@dataclass
class EvalScores:
    """Suite output. ``per_prompt[i]`` belongs to the prompt with id ``per_prompt_ids[i]``."""

    per_prompt: list[dict[str, float]]
    per_prompt_ids: list[str]
    aggregate: dict[str, float]
    checks: list[list[CheckResult]]  # per prompt, per sample (empty if samples weren't checked)
    greedy_checks: list[CheckResult | None] = field(default_factory=list)


def margin_of_error(p: float, n: int) -> float:
    """95% margin of error of a proportion ``p`` over ``n`` prompts (NaN for no prompts):
    :func:`polylora.stats.significance.margin_of_error` with the rounded 1.96 logged metrics
    have used."""
    if n <= 0:
        return math.nan
    return stats.margin_of_error(min(max(p, 0.0), 1.0), n, z=1.96)


@cache
def _metric_sets() -> dict[str, tuple[str, ...]]:
    """Every ``conf/eval/<name>.yaml``'s metrics list (with its defaults applied), by name."""
    from omegaconf import DictConfig, OmegaConf

    sets: dict[str, tuple[str, ...]] = {}

    def load(name: str) -> list[str] | None:
        node = OmegaConf.load(EVAL_CONF_DIR / f"{name}.yaml")
        assert isinstance(node, DictConfig)
        metrics = node.get("metrics")
        if metrics is not None:
            return [str(m) for m in metrics]
        for parent in node.get("defaults", []):  # inherits its parent's list (eval=headline)
            if isinstance(parent, str) and (EVAL_CONF_DIR / f"{parent}.yaml").exists():
                return load(parent)
        return None

    for path in sorted(EVAL_CONF_DIR.glob("*.yaml")):
        found = load(path.stem)
        if found is not None:
            sets[path.stem] = tuple(found)
    return sets


def metric_set(name: str) -> list[str]:
    """The metrics of the eval config ``name`` (``conf/eval/<name>.yaml``), resolved."""
    sets = _metric_sets()
    if name not in sets:
        raise ConfigError(f"unknown metric set {name!r}; known sets: {', '.join(sets)}")
    return resolve_metric_names(sets[name])


def resolve_metric_names(
    metric_names: Iterable[str], ks: Sequence[int] = (1, 3, 5, 10)
) -> list[str]:
    """Canonical, de-duplicated names; ``"pass@k"`` expands to ``pass@<k>`` for each k in ks,
    the name of an eval config (``"quick"``, ``"full"``, ...) to its ``metrics`` list. Unknown
    names raise ConfigError."""
    out: list[str] = []
    sets = _metric_sets()
    for raw in metric_names:
        name = canonical_name(raw)
        expanded = (
            resolve_metric_names(sets[name], ks)
            if name in sets
            else [f"pass@{k}" for k in ks]
            if name == "pass@k"
            else [name]
        )
        for item in expanded:
            get_metric(item)  # raises ConfigError listing the known names
            if item not in out:
                out.append(item)
    return out


def _validate(
    gens: Sequence[PromptGenerations], specs: list[MetricSpec], checker: Checker | None
) -> None:
    if not gens:
        raise ConfigError("no generations to score; evaluate at least one prompt")
    needs_checker = [s.name for s in specs if "checker" in s.needs]
    if needs_checker and checker is None:
        raise ConfigError(
            f"metric(s) {', '.join(needs_checker)} need a checker but the task has none; "
            "configure one (e.g. checker.type=heuristic) or remove them from eval.metrics"
        )
    for spec in specs:
        if "greedy" not in spec.needs:
            continue
        missing = [g.example.id for g in gens if g.greedy is None]
        if missing:
            raise ConfigError(
                f"metric {spec.name!r} needs a greedy answer per prompt, missing for "
                f"{missing[:3]}; generate greedy answers or remove {spec.name} from eval.metrics"
            )
    required = [(s.min_samples, s.name) for s in specs if s.min_samples and not s.pairwise]
    if required:
        need, metric = max(required)
        for g in gens:
            if len(g.samples) < need:
                raise ConfigError(
                    f"{metric} needs at least {need} samples per prompt, prompt "
                    f"{g.example.id!r} has {len(g.samples)}; raise eval.n_samples to ≥ {need} "
                    f"or remove {metric} from eval.metrics"
                )
    pairwise = [s for s in specs if s.pairwise]
    if pairwise:
        need = max(s.min_samples for s in pairwise)
        short = [g.example.id for g in gens if len(g.samples) < need]
        if short:
            raise ConfigError(
                f"metric(s) {', '.join(s.name for s in pairwise)} compare samples of the same "
                f"prompt and need ≥ {need} per prompt (prompt {short[0]!r} has fewer); raise "
                "eval.n_samples"
            )
    reference_based = [s.name for s in specs if "references" in s.needs]
    if reference_based:
        empty = [g.example.id for g in gens if not g.samples and g.greedy is None]
        if empty:
            raise ConfigError(
                f"metric(s) {', '.join(reference_based)} need at least one answer per prompt; "
                f"prompt {empty[0]!r} has none"
            )


def _check(checker: Checker, example: Example, answers: Sequence[str]) -> list[CheckResult]:
    batch = getattr(checker, "check_batch", None)
    if callable(batch):
        return list(batch([(example, a) for a in answers]))
    return [checker(example, a) for a in answers]


def _embedding_table(
    gens: Sequence[PromptGenerations], specs: list[MetricSpec], embedder: Embedder | None,
    normalized: Sequence[PromptGenerations] | None = None,
) -> dict[str, np.ndarray]:
    """One batched encode of every text any selected metric embeds (registry order); metrics
    that compare answers embed the ``normalized`` answers."""
    wanted = {s.name for s in specs if s.embeds is not None}
    embedding = [s for s in registered_in_order() if s.name in wanted]
    embedding += [s for s in specs if s.embeds is not None and s not in embedding]
    if not embedding:
        return {}
    texts: list[str] = []
    for i, g in enumerate(gens):
        for spec in embedding:
            assert spec.embeds is not None
            texts.extend(spec.embeds(normalized[i] if normalized is not None
                                     and spec.compares_answers else g))
    unique = list(dict.fromkeys(texts))
    matrix = encode_unique(unique, embedder) if unique else np.zeros((0, 0))
    return {t: matrix[i].astype(np.float64) for i, t in enumerate(unique)}


def score_generations(
    gens: Sequence[PromptGenerations],
    metric_names: Iterable[str],
    checker: Checker | None = None,
    ks: Sequence[int] = (1, 3, 5, 10),
    embedder: Embedder | None = None,
    show_progress: bool = True,
    normalize: Callable[[str], str] | None = None,
) -> EvalScores:
    """Score every prompt's generations with ``metric_names`` and aggregate over prompts.

    Names may carry an ``eval/`` prefix; ``"pass@k"`` means pass@k for each k in ``ks``; the
    name of an eval config expands to its ``metrics``. Model- and judge-based names (loss,
    perplexity, judge_win_rate) are skipped. Checker details (e.g. per-field accuracy) are
    averaged over each prompt's checked answers and reported under their own keys.
    Reference-based metrics are averaged over the samples (the greedy answer if none).
    Embeddings and batched metrics (BERTScore) are computed in one call over all prompts.
    Whenever samples are checked, the sharpening metrics (:mod:`polylora.metrics.sharpening`)
    and pass@k at every k up to the samples per prompt are added. Metrics that compare answers
    (diversity, distinct correct answers) see them through ``normalize`` (the data source's
    hook: how its checker reads an answer), when given.
    """
    names = [n for n in resolve_metric_names(metric_names, ks) if get_metric(n).computed_in_suite]
    gens = list(gens)
    if checker is not None and any({"samples", "checker"} <= get_metric(n).needs for n in names):
        curve = [f"pass@{k}" for k in curve_ks([len(g.samples) for g in gens])]
        names += [n for n in (*SHARPENING_METRICS, *curve) if n not in names]
    specs = [get_metric(n) for n in names]
    _validate(gens, specs, checker)
    for spec in specs:
        if spec.compute is None:
            raise ConfigError(
                f"metric {spec.name!r} is registered without a function, so the suite cannot "
                "compute it; register it with its function (register_metric or "
                "eval.custom_metrics)"
            )

    normalized = ([PromptGenerations(g.example, [normalize(s) for s in g.samples], g.greedy)
                   for g in gens] if normalize is not None else gens)
    # ---- batched model work (one call each, over all prompts)
    vectors = _embedding_table(gens, specs, embedder, normalized)
    batched = {s.name: s.batch(gens) for s in specs if s.batch is not None}

    check_samples = any({"samples", "checker"} <= s.needs for s in specs)
    check_greedy = any({"greedy", "checker"} <= s.needs for s in specs)
    wanted = set(names)
    per_prompt: list[dict[str, float]] = []
    checks: list[list[CheckResult]] = []
    greedy_checks: list[CheckResult | None] = []
    for index, g in enumerate(tqdm(gens, desc="scoring", unit="prompt", disable=not show_progress)):
        sample_checks = _check(checker, g.example, g.samples) if checker and check_samples else []
        greedy_check = (
            _check(checker, g.example, [g.greedy])[0]
            if checker and check_greedy and g.greedy is not None
            else None
        )
        checks.append(sample_checks)
        greedy_checks.append(greedy_check)
        inputs = PromptInputs(
            example=g.example,
            samples=g.samples,
            greedy=g.greedy,
            answers=g.scored_answers,
            references=list(g.example.all_references),
            sample_checks=sample_checks,
            greedy_check=greedy_check,
            vectors=vectors,
        )
        row: dict[str, float] = {}
        for spec in specs:
            assert spec.compute is not None
            args = {p: getattr(inputs, p) for p in spec.inputs}
            if spec.compares_answers and "samples" in args:
                args["samples"] = normalized[index].samples
            if "batched" in args:
                args["batched"] = batched[spec.name][index] if spec.name in batched else None
            row[spec.name] = spec.compute(**args)
        detail_source = sample_checks or ([greedy_check] if greedy_check else [])
        for key, value in _mean_details(detail_source).items():
            row[key if key not in wanted else f"checker/{key}"] = value
        per_prompt.append(row)

    return EvalScores(
        per_prompt=per_prompt,
        per_prompt_ids=[g.example.id for g in gens],
        aggregate=_aggregate(per_prompt, specs),
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


def _aggregate(per_prompt: list[dict[str, float]], specs: list[MetricSpec]) -> dict[str, float]:
    """Each metric's aggregation over prompts (checker details: their mean); ``<key>_moe`` for
    proportions and checker details whose values are rates."""
    by_name = {s.name: s for s in specs}
    keys = list(dict.fromkeys(k for row in per_prompt for k in row))
    out: dict[str, float] = {}
    for key in keys:
        spec = by_name.get(key)
        column = [row[key] for row in per_prompt if key in row]
        values = [v for v in column if not math.isnan(v)]
        if spec is not None:
            out[key] = spec.aggregate(column)
        else:
            out[key] = float(np.mean(values)) if values else math.nan
        is_detail_rate = spec is None and all(0.0 <= v <= 1.0 for v in values)
        if (spec is not None and spec.proportion) or is_detail_rate:
            out[f"{key}_moe"] = margin_of_error(out[key], len(values))
    return out
