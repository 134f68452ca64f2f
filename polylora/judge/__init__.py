"""LLM-as-judge: pairwise comparison of two systems' answers with the Anthropic Messages API.

For each prompt the judge model sees both answers (order randomized per prompt, seeded, so
position bias can be measured and cancels out in the aggregate) and returns one verdict per
criterion as strict JSON. Verdicts are mapped back to A (baseline) / B (candidate), cached on
disk so a re-run costs nothing, and aggregated into win rates (``judge/win_rate`` = B over A).

Modules: ``settings`` (model, prices, caps), ``rubric`` (criteria, prompt, verdict parsing),
``scoring`` (counts and rates), ``client`` (API calls, cache, cost cap), ``runs`` (judging two
MLflow runs' answers) and ``cli`` (``polylora judge``).
"""

from polylora.judge.client import JudgeError, judge_pairwise
from polylora.judge.rubric import parse_verdict
from polylora.judge.scoring import CriterionStats, JudgeResult
from polylora.judge.settings import DEFAULT_MODEL, NO_KEY_MESSAGE, JudgeConfig

__all__ = [
    "DEFAULT_MODEL",
    "NO_KEY_MESSAGE",
    "CriterionStats",
    "JudgeConfig",
    "JudgeError",
    "JudgeResult",
    "judge_pairwise",
    "parse_verdict",
]
