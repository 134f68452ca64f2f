"""Set scores and per-sample advantages of the polychromic objective (pure functions).

The polychromic objective rewards a *set* of N samples for one prompt with a set score
f(S), then hands each sample a share of that reward (its advantage A_i) for the
score-function gradient. This module holds only that arithmetic, on plain floats, so it can
be checked by hand; scoring texts (quality, diversity) happens in
:mod:`polylora.objectives.polychromic` with the shared metric functions.

Conventions (see docs/objective.md for the derivation):

- f(T) for any subset T of the samples is ``set_score(q[T], d(T))``: the mean quality of T
  times (``polychromic``) or plus (``additive``) the diversity d(T) of T. The pass@k-fitting
  scores look at the correct samples C(T) only (q ≥ 0.5): ``correct_diversity`` is
  d(C(T)) · #pairs(C(T)) / #pairs(T) (for a pairwise metric: the summed distance between
  correct answers over T's pairs) and ``coverage`` the number of distinct correct answers over
  |T|. Adding a wrong sample to T never changes either, and both grow with C(T), so a wrong
  sample's advantage is never positive (docs/objective.md).
- ``marginal``: for each subset size k = 2 … N−1, the mean of f over the size-k subsets that
  contain i minus the mean of f over all size-k subsets; A_i is the mean of that over k.
  Size 1 is left out (a single sample has no diversity) and size N too (the full set
  contains every sample, so it adds 0 to every A_i). Each size's term sums to zero over the
  set, hence so does A. With N = 2 there is no such size and A ≡ 0.
- ``leave_one_out``: f(S) − f(S ∖ {i}), centred to mean zero over the set.

Both therefore sum to zero over a set: the set's own average is the baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from itertools import combinations
from typing import Literal, get_args

SetScoreKind = Literal["polychromic", "additive", "correct_diversity", "coverage"]
#: Set scores that need correctness (a checker), not a graded quality.
CORRECTNESS_SCORES: tuple[str, ...] = ("correct_diversity", "coverage")
AdvantageKind = Literal["marginal", "leave_one_out"]
SET_SCORES: tuple[str, ...] = get_args(SetScoreKind)
ADVANTAGES: tuple[str, ...] = get_args(AdvantageKind)

#: A subset of sample positions, sorted ascending.
Subset = tuple[int, ...]
#: f(T) for a subset T of one prompt's samples.
SubsetScore = Callable[[Subset], float]


def set_score(qualities: Sequence[float], diversity: float, kind: SetScoreKind) -> float:
    """f(S) from the per-sample qualities of S and its diversity d(S).

    ``polychromic`` (Hamid et al.): mean(q) · d, zero when the set is all wrong OR all alike,
    so neither can be traded for the other. ``additive``: mean(q) + d, where diverse
    gibberish still scores d. An empty set scores 0.
    """
    if kind not in ("polychromic", "additive"):
        raise ValueError(f"unknown set score {kind!r}; use one of {', '.join(SET_SCORES)}")
    if not qualities:
        return 0.0
    mean_q = sum(qualities) / len(qualities)
    return mean_q * diversity if kind == "polychromic" else mean_q + diversity


def subset_scorer(
    qualities: Sequence[float],
    diversity_of: Callable[[Subset], float],
    kind: SetScoreKind,
    answer_keys: Sequence[str] | None = None,
) -> SubsetScore:
    """f over subsets of one prompt's samples, memoized (a subset's diversity is computed
    once even when both advantage rules and the logged set score ask for it).

    ``answer_keys`` (``coverage`` only): the normalized answer of each sample; two correct
    samples with the same key count once."""
    q = list(qualities)
    if kind not in SET_SCORES:
        raise ValueError(f"unknown set score {kind!r}; use one of {', '.join(SET_SCORES)}")
    if kind == "coverage" and answer_keys is None:
        raise ValueError("set_score=coverage needs the answer of each sample")

    @cache
    def f(subset: Subset) -> float:
        if not subset:
            return 0.0
        correct = tuple(i for i in subset if q[i] >= 0.5)
        if kind == "coverage":
            return len({answer_keys[i] for i in correct}) / len(subset)  # type: ignore[index]  # answer_keys is not None for coverage (checked above)
        if kind == "correct_diversity":
            if len(correct) < 2:
                return 0.0
            pairs = len(correct) * (len(correct) - 1) / (len(subset) * (len(subset) - 1))
            return diversity_of(correct) * pairs
        return set_score([q[i] for i in subset], diversity_of(subset), kind)

    return f


def marginal_advantages(n: int, score: SubsetScore) -> list[float]:
    """A_i = mean over k = 2 … n−1 of [mean f over size-k subsets ∋ i − mean f over size-k
    subsets]. Enumerates every subset (246 for n = 8). All zeros for n ≤ 2."""
    sizes = range(2, n)
    if n < 3:
        return [0.0] * n
    total = [0.0] * n
    for k in sizes:
        subsets = list(combinations(range(n), k))
        values = [score(t) for t in subsets]
        baseline = sum(values) / len(values)
        containing = [0.0] * n
        for t, value in zip(subsets, values, strict=True):
            for i in t:
                containing[i] += value
        per_member = len(subsets) * k / n  # = C(n-1, k-1): subsets holding a given sample
        for i in range(n):
            total[i] += containing[i] / per_member - baseline
    return [t / len(sizes) for t in total]


def leave_one_out_advantages(n: int, score: SubsetScore) -> list[float]:
    """A_i = f(S) − f(S ∖ {i}), centred to mean zero: what sample i adds to the set."""
    if n < 1:
        return []
    full = score(tuple(range(n)))
    raw = [full - score(tuple(j for j in range(n) if j != i)) for i in range(n)]
    mean = sum(raw) / n
    return [r - mean for r in raw]


SetBaselineKind = Literal["none", "batch"]
SET_BASELINES: tuple[str, ...] = get_args(SetBaselineKind)


def add_set_advantages(
    advantages: Sequence[Sequence[float]], set_scores: Sequence[float]
) -> list[list[float]]:
    """Add each set's score relative to the batch mean to all of its samples' advantages.

    The within-set advantages sum to zero per set, so they only say which sample of a set did
    better. This set-level term also rewards prompts whose whole set was better than the
    batch's other sets (a GRPO-style baseline across prompts); it sums to zero over the batch.
    With N = 2 the within-set term carries no diversity signal, and this is the one that does.
    """
    if not set_scores:
        return []
    mean = sum(set_scores) / len(set_scores)
    return [[a + (f - mean) for a in adv] for adv, f in zip(advantages, set_scores, strict=True)]


def compute_advantages(n: int, score: SubsetScore, kind: AdvantageKind) -> list[float]:
    """Per-sample advantages of one prompt's n samples under rule ``kind``."""
    if kind == "marginal":
        return marginal_advantages(n, score)
    if kind == "leave_one_out":
        return leave_one_out_advantages(n, score)
    raise ValueError(f"unknown advantage {kind!r}; use one of {', '.join(ADVANTAGES)}")


AdvantageNorm = Literal["none", "group_std", "batch_std"]
ADVANTAGE_NORMS: tuple[str, ...] = get_args(AdvantageNorm)
#: Added to the std before dividing (TRL's GRPO uses the same 1e-4).
NORM_EPS = 1e-4


def _std(values: Sequence[float]) -> float:
    """Sample standard deviation (n − 1, as ``torch.std`` and TRL's GRPO); 0 for n < 2."""
    n = len(values)
    if n < 2:
        return 0.0
    mean = sum(values) / n
    return (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5


def grpo_advantages(rewards: Sequence[float]) -> list[float]:
    """Pass@1 RL's raw advantages: r_i − mean(r) over one prompt's group (GRPO's std scaling
    is :func:`normalize_advantages`)."""
    mean = sum(rewards) / len(rewards) if rewards else 0.0
    return [float(r) - mean for r in rewards]


def normalize_advantages(
    advantages: Sequence[Sequence[float]], how: AdvantageNorm
) -> list[list[float]]:
    """Scale (never re-centre) advantages so that their typical size is 1, making the PG
    weight λ a weight relative to CE rather than a function of the reward's units.

    ``group_std``: each prompt's advantages divided by their own std (+1e-4), as GRPO;
    ``batch_std``: all divided by the std over the whole batch (steadier with small N);
    ``none``: unchanged (Dr. GRPO: no std scaling, whose bias Liu et al. point out). A group
    (or batch) with no spread is left unscaled: its advantages are all equal (usually 0).
    """
    out = [list(map(float, a)) for a in advantages]
    if how == "none":
        return out
    if how == "group_std":
        return [[a / (sd + NORM_EPS) for a in g] if (sd := _std(g)) > 1e-8 else g for g in out]
    if how == "batch_std":
        sd = _std([a for g in out for a in g])
        return [[a / (sd + NORM_EPS) for a in g] for g in out] if sd > 1e-8 else out
    raise ValueError(f"unknown advantage_norm {how!r}; use one of {', '.join(ADVANTAGE_NORMS)}")
