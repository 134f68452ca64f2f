"""Pass@k RL: the unbiased PKPO advantage (Walder & Karkhanis 2025) for binary rewards (the
sampled sets' pass@k it logs is the evaluation's estimator, :mod:`polylora.metrics.passk`).

pass@k of one prompt is E[max of k samples' rewards]. From n ≥ k samples, the unbiased
estimate averages max r over all k-subsets; its score-function gradient credits sample i
with the mean over the k-subsets S ∋ i of [max r(S) − max r(S ∖ {i})] (PKPO's leave-one-out
"k − 1" baseline: the max of the other k − 1, which does not depend on sample i, so the
gradient stays unbiased, for (n/k) · ∇ pass@k). With 0/1 rewards and c correct samples:

    A_i = C(n − c, k − 1) / C(n − 1, k − 1)   if sample i is correct   (no other correct one
                                                                        in a random (k−1)-set)
    A_i = 0                                   if it is wrong            (it never changes max)

k = 1 gives plain REINFORCE on r without a baseline. The Pass@k-Training paper (Chen et al.)
derives the same credit from group rewards. Scaling it per group (``group_std``) would erase
that weighting (at n 4, k 2 the credits 1, 2/3, 1/3 for c = 1, 2, 3 become 2.0, 1.73, 2.0), so
the credit is kept as it is (``advantage_norm: none``) or divided by one constant per batch
(``batch_std``), which keeps each batch's estimate pointing along ∇ pass@k.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import comb
from typing import Any

from polylora.data.example import Example
from polylora.errors import Problems
from polylora.metrics.passk import pass_at_k
from polylora.objectives.checker_rewards import checker_rewards, require_checker
from polylora.objectives.sampled import SampledSetObjective, SetScores
from polylora.record.names import TRAIN_SAMPLE_PASS_AT_K


def pkpo_advantages(rewards: Sequence[float], k: int) -> list[float]:
    """Per-sample PKPO advantages of one prompt's 0/1 rewards (closed form, see above)."""
    n = len(rewards)
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n, got k={k}, n={n}")
    correct = [r >= 0.5 for r in rewards]
    c = sum(correct)
    credit = comb(n - c, k - 1) / comb(n - 1, k - 1)
    return [credit if ok else 0.0 for ok in correct]


class PassKObjective(SampledSetObjective):
    """ce_weight · CE + λ · pass@k policy gradient (PKPO advantages, checker reward)."""

    name = "passk"
    needs_checker = True

    def __init__(self, k: int = 4, pg_weight: float = 1.0, n_generations: int = 6,
                 **core: Any) -> None:
        found = Problems()
        need = found.check  # records the message when the condition fails
        need(isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= n_generations,
             f"objective.k must be an integer in [1, objective.n_generations="
             f"{n_generations}], got {k!r}")
        norm = core.get("advantage_norm", "none")
        need(norm != "group_std",
             f"objective.advantage_norm={norm} scales each prompt's credit by its own std, "
             "which erases pass@k's weighting and biases PKPO's estimator; use "
             "objective.advantage_norm=none (unbiased) or batch_std (one constant per batch)")
        found.raise_any()
        super().__init__(pg_weight=pg_weight, n_generations=n_generations,
                         **{**core, "advantage_norm": norm})
        self.k = k

    def params(self) -> dict[str, Any]:
        return {**super().params(), "k": self.k}

    def check_data(self, has_checker: bool) -> None:
        """The reward is the task checker's verdict."""
        if self.generates:
            require_checker(has_checker, self.name)

    def score_sets(self, examples: Sequence[Example], texts: list[list[str]]) -> SetScores:
        rewards = checker_rewards(self.context.checker, examples, texts)
        n = self.n_generations
        passk = [pass_at_k(n, sum(r >= 0.5 for r in rs), self.k) for rs in rewards]
        return SetScores(advantages=[pkpo_advantages(r, self.k) for r in rewards],
                         qualities=rewards,
                         metrics={TRAIN_SAMPLE_PASS_AT_K: sum(passk) / len(passk)})
