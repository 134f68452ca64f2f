"""PKPO pass@k advantages equal the paper's definition computed directly, on an (n, c, k) grid."""

from __future__ import annotations

from itertools import combinations
from math import comb

import pytest

from polylora.errors import ConfigError
from polylora.metrics.passk import pass_at_k
from polylora.objectives.passk import PassKObjective, pkpo_advantages


def direct_pkpo(rewards: list[float], k: int) -> list[float]:
    """Walder & Karkhanis's leave-one-out ("k − 1") estimator by enumeration: for sample i,
    the mean over the k-subsets S ∋ i of max r(S) − max r(S ∖ {i})."""
    n = len(rewards)
    out = []
    for i in range(n):
        others = [j for j in range(n) if j != i]
        terms = []
        for rest in combinations(others, k - 1):
            with_i = max(rewards[j] for j in (*rest, i))
            without = max((rewards[j] for j in rest), default=0.0)
            terms.append(with_i - without)
        out.append(sum(terms) / len(terms))
    return out


def direct_pass_at_k(rewards: list[float], k: int) -> float:
    """The mean over all k-subsets of max r: the unbiased pass@k estimate."""
    subsets = list(combinations(range(len(rewards)), k))
    return sum(max(rewards[j] for j in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pkpo_closed_form_equals_direct_enumeration(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            # correct samples in different positions: the formula must not depend on order
            for rewards in ([1.0] * c + [0.0] * (n - c), [0.0] * (n - c) + [1.0] * c):
                assert pkpo_advantages(rewards, k) == pytest.approx(direct_pkpo(rewards, k))
                assert pass_at_k(n, c, k) == pytest.approx(direct_pass_at_k(rewards, k))


def test_pkpo_values_by_hand() -> None:
    # n = 4, c = 1, k = 2: the correct one is credited C(3,1)/C(3,1) = 1, wrong ones 0.
    assert pkpo_advantages([1, 0, 0, 0], 2) == [1.0, 0.0, 0.0, 0.0]
    # n = 4, c = 2, k = 2: a correct one adds only when the other pick is wrong: 2/3.
    assert pkpo_advantages([1, 1, 0, 0], 2) == pytest.approx([2 / 3, 2 / 3, 0, 0])
    # k = 1: REINFORCE on the reward; all correct with k >= 2: nothing to gain.
    assert pkpo_advantages([1, 0, 1], 1) == [1.0, 0.0, 1.0]
    assert pkpo_advantages([1, 1, 1], 2) == [0.0, 0.0, 0.0]
    assert comb(4, 2) == 6 and pass_at_k(4, 1, 2) == pytest.approx(0.5)


def test_k_must_fit_n_generations() -> None:
    with pytest.raises(ConfigError, match=r"objective.k must be an integer in \[1, "):
        PassKObjective(k=5, n_generations=4)
    PassKObjective(k=4, n_generations=4)


def configured_passk(**overrides: object) -> PassKObjective:
    """The pass@k objective exactly as ``objective=passk`` builds it (its shipped defaults)."""
    from helpers import REPO
    from omegaconf import OmegaConf

    from polylora.config import build

    node = OmegaConf.load(REPO / "polylora" / "conf" / "objective" / "passk.yaml")
    for key, value in overrides.items():
        node[key] = value
    return build(node, _convert_="all")


def test_configured_credit_is_pkpo_up_to_one_constant_per_batch() -> None:
    # A batch of n = 4 groups holding c = 1, 2, 3 correct samples at k = 2: PKPO credits a
    # correct sample 1, 2/3, 1/3. What the policy gradient weighs, after the objective's own
    # scaling, must be those enumerated credits times ONE constant for the whole batch.
    obj = configured_passk(k=2, n_generations=4)
    batch = [[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 1.0]]
    raw = [pkpo_advantages(r, 2) for r in batch]
    scaled = obj.scale_advantages(raw)
    direct = [direct_pkpo(r, 2) for r in batch]
    pairs = [(s, d) for sg, dg in zip(scaled, direct, strict=True)
             for s, d in zip(sg, dg, strict=True)]
    ratios = {round(s / d, 9) for s, d in pairs if d != 0}
    assert len(ratios) == 1 and next(iter(ratios)) > 0
    assert all(s == 0 for s, d in pairs if d == 0)


def test_per_group_std_scaling_is_refused_for_passk() -> None:
    with pytest.raises(ConfigError, match=r"objective.advantage_norm=group_std .*pass@k"):
        configured_passk(advantage_norm="group_std")
    for norm in ("none", "batch_std"):
        assert configured_passk(advantage_norm=norm).advantage_norm == norm


def test_the_objective_logs_the_evaluations_pass_at_k() -> None:
    """One unbiased estimator in the package: the objective's is the evaluation's."""
    import polylora.metrics.passk
    import polylora.objectives.passk

    assert polylora.objectives.passk.pass_at_k is polylora.metrics.passk.pass_at_k
