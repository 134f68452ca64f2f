"""Metric registry: every metric polylora reports, by name, with its direction and inputs.

Sweeps (Optuna ``direction``), statistics and reports read the direction from here, so a
metric's "higher is better" is declared once. The builtin table covers every name the
evaluation pipeline logs (``eval/<name>``); extensions add theirs with :func:`register_metric`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal, TypeVar

from polylora.errors import ConfigError
from polylora.record.names import canonical_metric

#: What a metric consumes. ``model`` (an LM forward pass) and ``judge`` (an LLM judge) metrics
#: are computed by the evaluation pipeline / judge module, not by :mod:`polylora.metrics.suite`.
NEEDS_VOCABULARY: frozenset[str] = frozenset(
    {"samples", "references", "checker", "greedy", "model", "judge"}
)

_PASS_AT_K_RE = re.compile(r"^pass@([1-9][0-9]*)$")

F = TypeVar("F", bound=Callable[..., object])


@dataclass(frozen=True)
class MetricSpec:
    """A metric's name, direction and inputs (what the suite must provide to compute it)."""

    name: str
    higher_is_better: bool
    needs: frozenset[str]
    description: str

    def __post_init__(self) -> None:
        unknown = set(self.needs) - NEEDS_VOCABULARY
        if unknown:
            raise ValueError(
                f"metric {self.name!r}: unknown needs {sorted(unknown)}; "
                f"use a subset of {sorted(NEEDS_VOCABULARY)}"
            )

    @property
    def computed_in_suite(self) -> bool:
        """False for model- or judge-based metrics, which the evaluation pipeline computes."""
        return not ({"model", "judge"} & self.needs)


_REGISTRY: dict[str, MetricSpec] = {}


def add_metric(spec: MetricSpec) -> MetricSpec:
    """Register ``spec``; re-registering an identical spec is a no-op, a different one an error."""
    existing = _REGISTRY.get(spec.name)
    if existing is not None and existing != spec:
        raise ValueError(f"metric {spec.name!r} is already registered with a different spec")
    _REGISTRY[spec.name] = spec
    return spec


def register_metric(
    name: str,
    *,
    higher_is_better: bool,
    needs: Iterable[str],
    description: str,
) -> Callable[[F], F]:
    """Decorator registering the decorated implementation's metric under ``name``."""
    spec = MetricSpec(name, higher_is_better, frozenset(needs), description)

    def decorator(fn: F) -> F:
        add_metric(spec)
        return fn

    return decorator


#: The one metric-name normalizer lives with the run record's names.
canonical_name = canonical_metric


def get_metric(name: str) -> MetricSpec:
    """The spec for ``name`` (with or without an ``eval/`` prefix); any ``pass@<k>`` is valid."""
    key = canonical_name(name)
    spec = _REGISTRY.get(key)
    if spec is not None:
        return spec
    match = _PASS_AT_K_RE.match(key)
    if match:
        return _pass_at_k_spec(int(match.group(1)))
    if key.startswith(("field_acc/", "rule/")) and len(key.split("/", 1)[1]) > 0:
        return MetricSpec(
            key, True, frozenset({"samples", "checker"}),
            "a checker detail averaged over prompts (per-field accuracy, heuristic rule)",
        )
    raise ConfigError(
        f"unknown metric {name!r}; known metrics: {', '.join(list_metrics())} "
        "(pass@<k> works for any k ≥ 1)"
    )


def list_metrics() -> list[str]:
    """Names of all registered metrics, sorted."""
    return sorted(_REGISTRY)


def metric_direction(name: str) -> Literal["maximize", "minimize"]:
    """Optuna direction for ``name`` (``"eval/loss"`` → ``"minimize"``)."""
    return "maximize" if get_metric(name).higher_is_better else "minimize"


def _pass_at_k_spec(k: int) -> MetricSpec:
    return MetricSpec(
        f"pass@{k}",
        True,
        frozenset({"samples", "checker"}),
        f"unbiased pass@{k} (Chen et al. 2021) from n ≥ {k} checked samples per prompt",
    )


def _register_builtins() -> None:
    """Declare every builtin metric once, here, so directions never depend on import order."""
    samples = frozenset({"samples"})
    sample_refs = frozenset({"samples", "references"})
    builtins = [
        MetricSpec(
            "loss",
            False,
            frozenset({"model", "references"}),
            "mean token cross-entropy of the reference answers (pipeline)",
        ),
        MetricSpec(
            "test_loss",
            False,
            frozenset({"model", "references"}),
            "mean response-token cross-entropy on the evaluation subset (pipeline)",
        ),
        MetricSpec(
            "test_perplexity",
            False,
            frozenset({"model", "references"}),
            "exp(test_loss) (pipeline)",
        ),
        MetricSpec(
            "perplexity",
            False,
            frozenset({"model", "references"}),
            "exp(loss) on the reference answers (pipeline)",
        ),
        MetricSpec(
            "accuracy",
            True,
            frozenset({"greedy", "checker"}),
            "fraction of prompts whose greedy answer the checker accepts",
        ),
        MetricSpec(
            "sample_accuracy",
            True,
            frozenset({"samples", "checker"}),
            "mean checker correctness over the sampled answers, averaged over prompts",
        ),
        *(_pass_at_k_spec(k) for k in (1, 3, 5, 10)),
        MetricSpec(
            "judge_win_rate",
            True,
            frozenset({"samples", "references", "judge"}),
            "fraction of pairwise comparisons an LLM judge awards to this run",
        ),
        MetricSpec(
            "self_bleu",
            False,
            samples,
            "mean sentence BLEU-4 of each sample against the other samples (lower = more diverse)",
        ),
        MetricSpec("distinct_1", True, samples, "distinct unigrams / total unigrams per prompt"),
        MetricSpec("distinct_2", True, samples, "distinct bigrams / total bigrams per prompt"),
        MetricSpec("distinct_3", True, samples, "distinct trigrams / total trigrams per prompt"),
        MetricSpec(
            "semantic_diversity",
            True,
            samples,
            "mean pairwise cosine distance of MiniLM embeddings of the samples",
        ),
        MetricSpec("rouge_1", True, sample_refs, "ROUGE-1 F1, best over references"),
        MetricSpec("rouge_2", True, sample_refs, "ROUGE-2 F1, best over references"),
        MetricSpec("rouge_l", True, sample_refs, "ROUGE-L F1, best over references"),
        MetricSpec(
            "bertscore_f1",
            True,
            sample_refs,
            "BERTScore F1 with the offline MiniLM encoder, best over references",
        ),
        MetricSpec(
            "embedding_similarity",
            True,
            sample_refs,
            "cosine similarity of MiniLM embeddings, best over references, clipped to [0, 1]",
        ),
    ]
    for spec in builtins:
        add_metric(spec)


_register_builtins()
