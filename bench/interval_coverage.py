"""Coverage of polylora's crossed interval (and of the seed-level t over seed means) by
simulation, including regimes where the variance-component estimates go negative.

    .venv/bin/python bench/interval_coverage.py                       # 3,000 experiments each
    .venv/bin/python bench/interval_coverage.py --experiments 500      # quicker

Each simulated experiment is the comparison's design: 3 seeds × 100 prompts of paired
differences d[s, p] = a_s + b_p + e_sp with true Δ = 0, seed SD σ_a, prompt SD σ_b and residual
SD 0.4 (a per-prompt pass@k difference over 20 samples is of that order). For each regime it
prints how often each 95 % interval covers 0 and how often the crossed interval fell back on the
residual alone (MS_s + MS_p − MS_e below MS_e: negative components). Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from polylora.stats.intervals import crossed_difference, t_interval  # noqa: E402

SEED_SDS = (0.0, 0.02, 0.04)
PROMPT_SDS = (0.0, 0.1, 0.25)
RESIDUAL_SD = 0.4


def coverage(seed_sd: float, prompt_sd: float, experiments: int, seeds: int, prompts: int,
             rng: np.random.Generator) -> tuple[float, float, float]:
    """(crossed coverage, seed-level t coverage, fraction of fallbacks) of one regime."""
    crossed = seed_level = fallback = 0
    for _ in range(experiments):
        d = (rng.normal(0, seed_sd, (seeds, 1)) + rng.normal(0, prompt_sd, (1, prompts))
             + rng.normal(0, RESIDUAL_SD, (seeds, prompts)))
        ci = crossed_difference(d)
        vc = ci.components
        crossed += ci.low <= 0.0 <= ci.high
        fallback += vc.ms_seed + vc.ms_prompt - vc.ms_residual <= vc.ms_residual
        t = t_interval(d.mean(axis=1))
        seed_level += t.low <= 0.0 <= t.high
    return crossed / experiments, seed_level / experiments, fallback / experiments


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--experiments", type=int, default=3000, help="per regime (%(default)s)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--prompts", type=int, default=100)
    p.add_argument("--rng-seed", type=int, default=2026)
    args = p.parse_args(argv)
    rng = np.random.default_rng(args.rng_seed)
    started = time.perf_counter()
    print(f"{args.seeds} seeds × {args.prompts} prompts, residual SD {RESIDUAL_SD}, "
          f"{args.experiments} experiments per regime, true Δ = 0, nominal 95 %\n")
    print("| seed SD | prompt SD | crossed interval covers | seed-level t covers | "
          "crossed fell back (negative components) |")
    print("|---|---|---|---|---|")
    for seed_sd in SEED_SDS:
        for prompt_sd in PROMPT_SDS:
            c, t, f = coverage(seed_sd, prompt_sd, args.experiments, args.seeds, args.prompts,
                               rng)
            print(f"| {seed_sd:g} | {prompt_sd:g} | {c:.1%} | {t:.1%} | {f:.1%} |", flush=True)
    print(f"\n({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
