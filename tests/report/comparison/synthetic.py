"""Synthetic comparison data with known per-prompt scores, shared by the comparison tests:
three groups × three seeds × 24 prompts, deterministic, and the hand computations to check
the statistics against."""

from __future__ import annotations

import numpy as np

from polylora.report.comparison.model import RunData
from polylora.stats.analysis import Plan

IDS = [f"p{i:02d}" for i in range(24)]
SEEDS = (42, 123, 456)
# group → (objective tag, rouge_l shift, self_bleu shift, pass@10 shift)
GROUPS = {
    "baseline": ("CrossEntropyObjective", 0.0, 0.0, 0.0),
    "polychromic_0.3": ("PolychromicObjective", 0.15, -0.12, 0.25),
    "polychromic_0.1": ("PolychromicObjective", 0.01, 0.0, 0.02),
}


def synthetic_scores() -> dict[tuple[str, int], dict[str, dict[str, float]]]:
    """(group, seed) → metric → prompt id → score; deterministic."""
    rng = np.random.default_rng(7)
    difficulty = rng.uniform(0.2, 0.6, size=len(IDS))
    out: dict[tuple[str, int], dict[str, dict[str, float]]] = {}
    for group, (_, d_rouge, d_bleu, d_pass) in GROUPS.items():
        for seed in SEEDS:
            noise = rng.normal(0.0, 0.05, size=(3, len(IDS)))
            rouge = np.clip(difficulty + d_rouge + noise[0], 0, 1)
            bleu = np.clip(0.5 - 0.3 * difficulty + d_bleu + noise[1], 0, 1)
            pass10 = np.clip(difficulty + 0.2 + d_pass + noise[2], 0, 1)
            out[(group, seed)] = {
                "rouge_l": dict(zip(IDS, rouge.tolist(), strict=True)),
                "self_bleu": dict(zip(IDS, bleu.tolist(), strict=True)),
                "pass@10": dict(zip(IDS, pass10.tolist(), strict=True)),
            }
    return out


SCORES = synthetic_scores()
FINAL_LOSS = {key: 0.8 + 0.01 * i for i, key in enumerate(SCORES)}


def run_data() -> list[RunData]:
    return [
        RunData(f"{g}-{s}", g, {m: float(np.mean(list(v.values()))) for m, v in sc.items()},
                per_prompt=sc, seed=str(s))
        for (g, s), sc in SCORES.items()
    ]


def seed_values(group: str, metric: str) -> np.ndarray:
    return np.array([np.mean(list(SCORES[(group, s)][metric].values())) for s in SEEDS])


PLAN = Plan(primary="pass@10", direction="increase", noninferiority={"rouge_l": 0.05})


def diff_table(group: str, metric: str) -> np.ndarray:
    """seeds × prompts of candidate − baseline, by hand."""
    return np.array([[SCORES[(group, s)][metric][i] - SCORES[("baseline", s)][metric][i]
                      for i in IDS] for s in SEEDS])
