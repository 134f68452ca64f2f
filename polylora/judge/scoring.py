"""Verdicts to numbers: per-criterion counts and rates, and the run's judge result.

``judge/win_rate`` is the candidate (B) over the baseline (A), ties counting half; the
first-position win rate measures the judge's position bias (0.5: none).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polylora.data.jsonl import write_rows
from polylora.judge.rubric import Verdict, map_back, parse_verdict
from polylora.judge.settings import JudgeConfig
from polylora.record import names


@dataclass
class CriterionStats:
    """Verdict counts for one criterion (or pooled over all); rates are over valid verdicts."""

    a_wins: int = 0
    b_wins: int = 0
    ties: int = 0
    invalid: int = 0

    @property
    def n_valid(self) -> int:
        """Verdicts that parsed to 1/2/tie."""
        return self.a_wins + self.b_wins + self.ties

    def _rate(self, count: int) -> float:
        return count / self.n_valid if self.n_valid else math.nan

    @property
    def a_win_rate(self) -> float:
        """Fraction of valid verdicts won by A (baseline)."""
        return self._rate(self.a_wins)

    @property
    def b_win_rate(self) -> float:
        """Fraction of valid verdicts won by B (candidate)."""
        return self._rate(self.b_wins)

    @property
    def tie_rate(self) -> float:
        """Fraction of valid verdicts that are ties."""
        return self._rate(self.ties)

    @property
    def win_rate(self) -> float:
        """B over A with ties as half a win: 0.5 = no difference, 1.0 = B always better."""
        return self._rate(self.b_wins) + 0.5 * self._rate(self.ties) if self.n_valid else math.nan

    @property
    def invalid_rate(self) -> float:
        """Fraction of all verdicts (valid or not) that could not be parsed."""
        total = self.n_valid + self.invalid
        return self.invalid / total if total else math.nan

    def add(self, verdict: Verdict) -> None:
        """Count one mapped verdict."""
        if verdict == "A":
            self.a_wins += 1
        elif verdict == "B":
            self.b_wins += 1
        elif verdict == "tie":
            self.ties += 1
        else:
            self.invalid += 1


@dataclass
class JudgeResult:
    """Aggregated pairwise verdicts plus per-prompt rows (``rows`` is ready for JSONL).

    ``first_position_win_rate`` is, over decisive (non-tie, valid) verdicts, how often the
    answer shown first won: 0.5 means no position bias.
    """

    model: str
    criteria: list[str]
    label_a: str
    label_b: str
    per_criterion: dict[str, CriterionStats]
    overall: CriterionStats
    first_position_win_rate: float
    n_prompts: int
    n_compared: int
    n_skipped: int
    calls_made: int
    calls_cached: int
    estimated_cost_usd: float
    cost_usd: float
    rows: list[dict[str, Any]]

    @property
    def win_rate(self) -> float:
        """The headline ``judge_win_rate``: B (candidate) over A (baseline), ties count half."""
        return self.overall.win_rate

    def to_metrics(self) -> dict[str, float]:
        """Flat ``judge/...`` metrics for MLflow; rates are NaN when nothing valid was judged."""
        m: dict[str, float] = {
            names.JUDGE_WIN_RATE: self.overall.win_rate,
            names.JUDGE_B_WIN_RATE: self.overall.b_win_rate,
            names.JUDGE_A_WIN_RATE: self.overall.a_win_rate,
            names.JUDGE_TIE_RATE: self.overall.tie_rate,
            names.JUDGE_INVALID_RATE: self.overall.invalid_rate,
            names.JUDGE_FIRST_POSITION_WIN_RATE: self.first_position_win_rate,
        }
        for c, s in self.per_criterion.items():
            m[f"{names.JUDGE_PREFIX}{c}_win_rate"] = s.win_rate
            m[f"{names.JUDGE_PREFIX}{c}_b_win_rate"] = s.b_win_rate
            m[f"{names.JUDGE_PREFIX}{c}_a_win_rate"] = s.a_win_rate
            m[f"{names.JUDGE_PREFIX}{c}_tie_rate"] = s.tie_rate
        m.update(
            {
                names.JUDGE_N_COMPARED: float(self.n_compared),
                names.JUDGE_N_SKIPPED: float(self.n_skipped),
                names.JUDGE_CALLS_MADE: float(self.calls_made),
                names.JUDGE_CALLS_CACHED: float(self.calls_cached),
                names.JUDGE_ESTIMATED_COST: self.estimated_cost_usd,
                names.JUDGE_COST: self.cost_usd,
            }
        )
        return m

    def write_jsonl(self, path: str | os.PathLike[str]) -> Path:
        """Write ``rows`` one JSON object per line (UTF-8); returns the path."""
        return write_rows(self.rows, path)


def aggregate(
    cfg: JudgeConfig,
    prompts: Sequence[str],
    answers_a: Sequence[str],
    answers_b: Sequence[str],
    ids: Sequence[str],
    first_shown: Sequence[str],
    entries: Sequence[dict[str, Any] | None],
    from_cache: Sequence[bool],
    label_a: str,
    label_b: str,
) -> JudgeResult:
    """Parse each judged reply, map positions back to A/B and count; unjudged ones are left out."""
    criteria = list(cfg.criteria)
    per = {c: CriterionStats() for c in criteria}
    overall = CriterionStats()
    first_wins = decisive = 0
    rows: list[dict[str, Any]] = []
    for i, entry in enumerate(entries):
        if entry is None:  # not judged (stopped at the cost cap)
            continue
        positional = parse_verdict(entry["text"], criteria)
        verdicts: dict[str, Verdict] = {}
        for c in criteria:
            v = map_back(positional[c], first_shown[i])
            verdicts[c] = v
            per[c].add(v)
            overall.add(v)
            if positional[c] in ("1", "2"):
                decisive += 1
                first_wins += positional[c] == "1"
        in_t, out_t = int(entry.get("input_tokens", 0)), int(entry.get("output_tokens", 0))
        rows.append(
            {
                "id": ids[i],
                "prompt": prompts[i],
                "answer_a": answers_a[i],
                "answer_b": answers_b[i],
                "label_a": label_a,
                "label_b": label_b,
                "first_shown": first_shown[i],
                "verdicts": verdicts,
                "positional": positional,
                "judge_text": entry["text"],
                "judge_model": cfg.model,
                "cached": from_cache[i],
                "input_tokens": in_t,
                "output_tokens": out_t,
                "cost_usd": cfg.cost_usd(in_t, out_t),
            }
        )
    return JudgeResult(
        model=cfg.model,
        criteria=criteria,
        label_a=label_a,
        label_b=label_b,
        per_criterion=per,
        overall=overall,
        first_position_win_rate=first_wins / decisive if decisive else math.nan,
        n_prompts=len(prompts),
        n_compared=len(rows),
        n_skipped=0,
        calls_made=0,
        calls_cached=0,
        estimated_cost_usd=0.0,
        cost_usd=0.0,
        rows=rows,
    )
