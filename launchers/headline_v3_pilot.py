"""``python launchers/headline_v3_pilot.py --tracking-uri URI --sft ID --grpo ID
--polychromic ID [--out DIR]``

The third headline's pilot, analysed: the manipulation check the plan requires before any main
run (docs/results/headline_v3_plan.md, "Pilot"). From one seed's SFT adapter evaluated with the
design's evaluation and its pass@1 RL and polychromic runs (the design's arm files), it writes
the two tables (``per_prompt.csv``, ``runs.csv``) and ``pilot.md`` into ``--out``:

- (a) does pass@1 RL sharpen: distinct answers per correct sample and pass@k at large k,
  pass@1 RL − SFT, prompts as the unit (one seed);
- (b) does polychromic's signal differ from pass@1 RL's in at least a third of its training
  groups (``train/differs_from_pass1``);
- per k, the share of two-constraint prompts already at pass@k = 1 (where the primary k must
  leave room), and polychromic − pass@1 RL per k with the per-prompt SD the power analysis uses.

``--from-tables`` rewrites pilot.md from the committed tables alone.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from polylora.render.markdown import signed, table
from polylora.report import headline_v3 as v3
from polylora.report.headline_v2 import Launch, RunRef
from polylora.report.headline_v3_report import collect
from polylora.stats import power
from polylora.stats.intervals import SeedInterval, VarianceComponents


def summary(tables: v3.Tables) -> str:
    """pilot.md from the tables."""

    def ci(e: SeedInterval) -> str:
        if not math.isfinite(e.estimate):
            return "–"
        return f"{signed(e.estimate)} [{signed(e.low)}, {signed(e.high)}]"

    sharp, sharp_d = v3.prompt_paired(tables, "sft", "grpo", "all", v3.SHARPENING)
    rows = [["pass@1 RL − SFT", v3.SHARPENING, "all", ci(sharp), sharp_d.size]]
    for k in v3.PASSK_KS:
        e, d = v3.prompt_paired(tables, "sft", "grpo", "two", f"pass@{k}")
        rows.append(["pass@1 RL − SFT", f"pass@{k}", "two-constraint", ci(e), d.size])
    differs = v3.differs_share(tables)
    out = ["# Third headline: pilot (manipulation check)", "",
           "One seed; prompts are the unit of these intervals (no seed variance in them).", "",
           "## (a) Does pass@1 RL sharpen?", "",
           *table(["contrast", "metric", "prompts", "Δ [95 % CI over prompts]", "n prompts"],
                  rows), "",
           "## (b) Does polychromic's signal differ from pass@1 RL's?", "",
           f"- share of polychromic's training groups whose advantages are not a positive "
           f"multiple of pass@1 RL's on the same rewards (mean over its logged steps): "
           f"**{differs:.3f}** (needed ≥ {v3.MIN_DIFFERS:.3f})", ""]
    ceil_rows, effect_rows = [], []
    for k in v3.PASSK_KS:
        m = f"pass@{k}"
        ceil_rows.append([m, *(f"{v3.at_ceiling(tables, a, 'two', m):.3f}"
                              for a in ("sft", "grpo", "polychromic")),
                          *(f"{tables.mean(a, 'two', m).estimate:.3f}"
                            for a in ("sft", "grpo", "polychromic"))])
        e, d = v3.prompt_paired(tables, "grpo", "polychromic", "two", m)
        sd = float(d.std(ddof=1)) if d.size > 1 else math.nan
        effect_rows.append([m, ci(e), f"{sd:.3f}", d.size])
    out += ["## Room at each k (two-constraint prompts)", "",
            *table(["k", "at 1: SFT", "at 1: pass@1 RL", "at 1: polychromic", "mean: SFT",
                    "mean: pass@1 RL", "mean: polychromic"], ceil_rows), "",
            "## Polychromic − pass@1 RL (two-constraint prompts)", "",
            *table(["metric", "Δ [95 % CI over prompts]", "SD of per-prompt Δ", "n prompts"],
                   effect_rows), ""]
    out += power_section(tables)
    return "\n".join(out)


#: The seed variance of a pass@k difference assumed for power (the first headline's paired
#: seed SD 0.063, squared: an upper bound; the second design measured 0 for this contrast).
SEED_VARIANCE = (0.0, 0.004)


def power_section(tables: v3.Tables, metric: str = v3.Settings().primary,
                  prompts: int = 104, seeds: Sequence[int] = (3, 4, 5, 6, 8, 10)) -> list[str]:
    """MDE of polychromic − pass@1 RL on ``metric`` for designs of ``seeds`` × ``prompts``,
    from the pilot's per-prompt differences (one seed: their variance is σ²_prompt + σ²_e,
    all counted as σ²_e) and each assumed seed variance."""
    _, d = v3.prompt_paired(tables, "grpo", "polychromic", "two", metric)
    if d.size < 2:
        return ["## Power", "", "- not computable: fewer than two paired prompts", ""]
    resid = float(d.var(ddof=1))
    rows = []
    for s in seeds:
        cells: list[object] = [s, prompts]
        for seed_var in SEED_VARIANCE:
            vc = VarianceComponents(s, prompts, seed_var, 0.0, resid, math.nan, math.nan,
                                    math.nan)
            se = math.sqrt(vc.variance_of_mean(s, prompts))
            df = power.design_df(vc, s, prompts)
            cells += [f"{se:.4f}", f"{df:.1f}", f"{power.mde(se, df):.3f}"]
        rows.append(cells)
    head = ["seeds", "prompts"] + [f"{c} (σ²_seed {v:g})" for v in SEED_VARIANCE
                                   for c in ("SE", "df", "MDE")]
    return ["## Power", "",
            f"{metric}, polychromic − pass@1 RL, two-constraint prompts; σ²_e = variance of the "
            f"pilot's per-prompt differences = {resid:.4f} ({d.size} prompts, 32 samples), "
            "σ²_prompt 0; α 0.05 two-sided, power 0.8:", "", *table(head, rows), ""]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="launchers/headline_v3_pilot.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tracking-uri", help="the pilot's MLflow store")
    p.add_argument("--sft", help="run id: the SFT adapter evaluated with eval=headline_v3")
    p.add_argument("--grpo", help="run id: headline_v3_grpo from that adapter")
    p.add_argument("--polychromic", help="run id: headline_v3_polychromic from that adapter")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default="docs/results/headline_v3_pilot_files")
    p.add_argument("--from-tables", action="store_true",
                   help="rewrite pilot.md from the tables in --out (no store needed)")
    args = p.parse_args(argv)
    out = Path(args.out)
    if not args.from_tables:
        missing = [o for o in ("tracking_uri", "sft", "grpo", "polychromic")
                   if not getattr(args, o)]
        if missing:
            p.error("give " + ", ".join("--" + m.replace("_", "-") for m in missing)
                    + " (or --from-tables)")
        from polylora.record import reader

        refs = [RunRef(args.sft, "sft", "sft", args.seed, 1.0),
                RunRef(args.grpo, "arm", "grpo", args.seed, 1.0),
                RunRef(args.polychromic, "arm", "polychromic", args.seed, 1.0)]
        launch = Launch("pilot", "", args.tracking_uri, [args.seed], ["grpo", "polychromic"],
                        [], "", 0.05, runs=refs, design="headline_v3")
        v3.write_tables(out, *collect(reader.get_client(args.tracking_uri), launch))
    text = summary(v3.read_tables(out))
    (out / "pilot.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
