"""Pass@1 RL (GRPO): each sample's checker reward minus its prompt's mean reward.

The baseline a diversity-aware objective must beat: it maximizes the expected reward of ONE
sample, which is known to collapse diversity. With ``advantage_norm: group_std`` (default)
the advantages are divided by the group's reward std as in GRPO (Shao et al.) and TRL; with
``advantage_norm: none`` it is Dr. GRPO (Liu et al.: no std scaling; the core's default
constant token normalizer removes the length bias too). Sampling, log-probs, KL and monitors
are the shared core (:mod:`polylora.objectives.sampled`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from polylora.data.example import Example
from polylora.objectives.advantages import grpo_advantages
from polylora.objectives.checker_rewards import checker_rewards, require_checker
from polylora.objectives.sampled import SampledSetObjective, SetScores


class GRPOObjective(SampledSetObjective):
    """ce_weight · CE + λ · group-relative pass@1 policy gradient (checker reward)."""

    name = "grpo"
    needs_checker = True

    def __init__(self, pg_weight: float = 1.0, n_generations: int = 4, **core: Any) -> None:
        super().__init__(pg_weight=pg_weight, n_generations=n_generations, **core)

    def check_data(self, has_checker: bool) -> None:
        """The reward is the task checker's verdict."""
        if self.generates:
            require_checker(has_checker, self.name)

    def score_sets(self, examples: Sequence[Example], texts: list[list[str]]) -> SetScores:
        rewards = checker_rewards(self.context.checker, examples, texts)
        return SetScores(advantages=[grpo_advantages(r) for r in rewards], qualities=rewards)
