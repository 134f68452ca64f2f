"""Set scores and advantages against hand-computed values; zero-sum over every set."""

from __future__ import annotations

import random
from itertools import combinations

import pytest

from polylora.objectives.advantages import (
    compute_advantages,
    leave_one_out_advantages,
    marginal_advantages,
    set_score,
    subset_scorer,
)

# Three samples: qualities and a hand-chosen diversity for every subset of size >= 2.
Q3 = [1.0, 1.0, 0.0]
D3 = {(0, 1): 0.2, (0, 2): 0.8, (1, 2): 0.6, (0, 1, 2): 0.5}


def _f3(kind: str = "polychromic"):
    return subset_scorer(Q3, lambda t: D3.get(t, 0.0), kind)  # type: ignore[arg-type]


def test_set_score_polychromic_and_additive() -> None:
    assert set_score([1.0, 0.0], 0.8, "polychromic") == pytest.approx(0.4)
    assert set_score([1.0, 0.0], 0.8, "additive") == pytest.approx(1.3)
    # Gibberish (quality 0) however diverse: nothing under polychromic, d under additive.
    assert set_score([0.0, 0.0, 0.0], 0.9, "polychromic") == 0.0
    assert set_score([0.0, 0.0, 0.0], 0.9, "additive") == pytest.approx(0.9)
    # Identical (diversity 0) however good: nothing under polychromic.
    assert set_score([1.0, 1.0, 1.0], 0.0, "polychromic") == 0.0
    with pytest.raises(ValueError, match="unknown set score"):
        set_score([1.0], 0.5, "product")  # type: ignore[arg-type]


def test_subset_scores_by_hand() -> None:
    f = _f3()
    assert f((0, 1)) == pytest.approx(1.0 * 0.2)
    assert f((0, 2)) == pytest.approx(0.5 * 0.8)
    assert f((1, 2)) == pytest.approx(0.5 * 0.6)
    assert f((0, 1, 2)) == pytest.approx(2 / 3 * 0.5)


def test_marginal_n3_by_hand() -> None:
    # Sizes 2..N-1 = {2}: pairs f = .2, .4, .3, mean .3.
    # A0 = (.2+.4)/2 - .3 = 0; A1 = (.2+.3)/2 - .3 = -.05; A2 = (.4+.3)/2 - .3 = .05
    assert marginal_advantages(3, _f3()) == pytest.approx([0.0, -0.05, 0.05])


def test_leave_one_out_n3_by_hand() -> None:
    # f(S) = 1/3; raw = 1/3 - f12, 1/3 - f02, 1/3 - f01 = 1/30, -2/30, 4/30; mean 1/30.
    assert leave_one_out_advantages(3, _f3()) == pytest.approx([0.0, -0.1, 0.1])


def test_n4_both_rules_by_hand() -> None:
    # Samples labelled a a b c, quality 1, d(T) = (distinct labels - 1) / (|T| - 1).
    labels = "aabc"

    def d(t: tuple[int, ...]) -> float:
        return (len({labels[i] for i in t}) - 1) / (len(t) - 1)

    f = subset_scorer([1.0] * 4, d, "polychromic")
    # size 2: pairs ∋ 0 → (0+1+1)/3 - 5/6 = -1/6; ∋ 2 → 1 - 5/6 = +1/6
    # size 3: triples ∋ 0 → (.5+.5+1)/3 - .75 = -1/12; ∋ 2 → (.5+1+1)/3 - .75 = +1/12
    assert marginal_advantages(4, f) == pytest.approx([-1 / 8, -1 / 8, 1 / 8, 1 / 8])
    # f(S) = 2/3; raw = 2/3 - 1, 2/3 - 1, 2/3 - .5, 2/3 - .5 → centred ±1/4
    assert leave_one_out_advantages(4, f) == pytest.approx([-0.25, -0.25, 0.25, 0.25])


@pytest.mark.parametrize("kind", ["marginal", "leave_one_out"])
@pytest.mark.parametrize("n", range(2, 9))
def test_advantages_sum_to_zero(kind: str, n: int) -> None:
    rng = random.Random(n)
    table = {t: rng.random() for k in range(1, n + 1) for t in combinations(range(n), k)}
    adv = compute_advantages(n, table.__getitem__, kind)  # type: ignore[arg-type]
    assert len(adv) == n
    assert sum(adv) == pytest.approx(0.0, abs=1e-12)
    if n >= 3:
        assert any(abs(a) > 1e-6 for a in adv)  # a random f gives a signal


def test_n2_marginal_has_no_signal_and_polychromic_loo_neither() -> None:
    # One pair: both samples share its diversity, so within-set credit is equal (documented).
    f = subset_scorer([1.0, 0.0], lambda t: 0.7 if len(t) == 2 else 0.0, "polychromic")
    assert marginal_advantages(2, f) == [0.0, 0.0]
    assert leave_one_out_advantages(2, f) == pytest.approx([0.0, 0.0])
    # additive + leave-one-out keeps the quality difference only: (q_i - q_j) / 2.
    g = subset_scorer([1.0, 0.0], lambda t: 0.7 if len(t) == 2 else 0.0, "additive")
    assert leave_one_out_advantages(2, g) == pytest.approx([0.5, -0.5])


def test_equal_subset_scores_give_zero_advantages() -> None:
    f = subset_scorer([1.0] * 5, lambda t: 0.0, "polychromic")  # identical samples
    assert marginal_advantages(5, f) == pytest.approx([0.0] * 5)
    assert leave_one_out_advantages(5, f) == pytest.approx([0.0] * 5)


def test_subset_scorer_memoizes_diversity() -> None:
    calls: list[tuple[int, ...]] = []

    def d(t: tuple[int, ...]) -> float:
        calls.append(t)
        return 0.5

    f = subset_scorer([1.0] * 4, d, "polychromic")
    marginal_advantages(4, f)
    leave_one_out_advantages(4, f)
    assert len(calls) == len(set(calls)) == 11  # 6 pairs + 4 triples + the full set


def test_unknown_advantage_rule() -> None:
    with pytest.raises(ValueError, match="unknown advantage"):
        compute_advantages(3, _f3(), "shapley")  # type: ignore[arg-type]


def test_set_baseline_credits_whole_sets_against_the_batch() -> None:
    from polylora.objectives.advantages import add_set_advantages

    # Two prompts with N = 2: within-set advantages are zero (one pair per prompt).
    within = [[0.0, 0.0], [0.0, 0.0]]
    out = add_set_advantages(within, set_scores=[0.8, 0.2])
    assert all(
        abs(a - b) < 1e-12 for row, exp in zip(out, [[0.3, 0.3], [-0.3, -0.3]], strict=True)
        for a, b in zip(row, exp, strict=True)
    )
    assert abs(sum(sum(r) for r in out)) < 1e-12  # zero over the batch
    assert add_set_advantages([], []) == []


# --------------------------------------------------------------------------- pass@k set scores


def _wrong_answer_case(kind: str, advantage: str = "marginal") -> list[float]:
    """Two identical correct words and one different wrong word (semantic-like distances:
    identical 0, different 1)."""
    from polylora.objectives.advantages import subset_scorer

    texts = ["cat", "cat", "dog"]
    q = [1.0, 1.0, 0.0]

    def d(t: tuple[int, ...]) -> float:
        pairs = list(combinations(t, 2))
        return sum(texts[i] != texts[j] for i, j in pairs) / len(pairs) if pairs else 0.0

    f = subset_scorer(q, d, kind, texts)  # type: ignore[arg-type]
    return compute_advantages(3, f, advantage)  # type: ignore[arg-type]


@pytest.mark.parametrize("advantage", ["marginal", "leave_one_out"])
def test_wrong_answer_is_pushed_up_by_polychromic_but_never_by_correct_only_scores(
    advantage: str,
) -> None:
    assert _wrong_answer_case("polychromic", advantage)[2] > 0  # the documented flaw
    for kind in ("correct_diversity", "coverage"):
        assert _wrong_answer_case(kind, advantage)[2] <= 0, kind


def test_wrong_sample_never_gains_under_correct_diversity_random_sets() -> None:
    """Random qualities and pairwise distances, N = 3..6: a wrong sample's advantage is <= 0."""
    from polylora.objectives.advantages import subset_scorer

    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(3, 6)
        q = [float(rng.random() < 0.5) for _ in range(n)]
        dist = {p: rng.random() for p in combinations(range(n), 2)}

        def d(t: tuple[int, ...], dist: dict = dist) -> float:
            pairs = list(combinations(t, 2))
            return sum(dist[p] for p in pairs) / len(pairs) if pairs else 0.0

        keys = [str(rng.randint(0, 2)) for _ in range(n)]
        for kind in ("correct_diversity", "coverage"):
            for rule in ("marginal", "leave_one_out"):
                f = subset_scorer(q, d, kind, keys)  # type: ignore[arg-type]
                adv = compute_advantages(n, f, rule)  # type: ignore[arg-type]
                wrong = [a for a, ok in zip(adv, q, strict=True) if ok == 0.0]
                assert all(a <= 1e-12 for a in wrong), (kind, rule, q)


def test_coverage_counts_distinct_correct_answers() -> None:
    from polylora.objectives.advantages import subset_scorer

    f = subset_scorer([1.0, 1.0, 1.0, 0.0], lambda t: 0.0, "coverage", ["a", "a", "b", "c"])
    assert f((0, 1, 2, 3)) == pytest.approx(2 / 4)  # a, b (c is wrong)
    assert f((0, 1)) == pytest.approx(1 / 2)


def test_normalize_advantages_group_batch_none() -> None:
    from polylora.objectives.advantages import NORM_EPS, normalize_advantages

    adv = [[0.5, -0.5, -0.5, 0.5], [0.0, 0.0, 0.0, 0.0], [0.2, -0.1, -0.1, 0.0]]
    assert normalize_advantages(adv, "none") == adv
    group = normalize_advantages(adv, "group_std")
    sd0 = (4 * 0.25 / 3) ** 0.5  # sample std (n - 1), as torch.std and TRL
    assert group[0] == pytest.approx([a / (sd0 + NORM_EPS) for a in adv[0]])
    assert group[1] == [0.0] * 4  # no spread: unchanged
    sd2 = (sum(a * a for a in adv[2]) / 3) ** 0.5  # mean 0
    assert group[2] == pytest.approx([a / (sd2 + NORM_EPS) for a in adv[2]])
    flat = [a for g in adv for a in g]
    m = sum(flat) / len(flat)
    sd = (sum((a - m) ** 2 for a in flat) / (len(flat) - 1)) ** 0.5
    batch = normalize_advantages(adv, "batch_std")
    assert batch == [pytest.approx([a / (sd + NORM_EPS) for a in g]) for g in adv]
