"""``python launchers/headline.py --v3 [--smoke] [--seeds ...] [-- overrides]``

The headline's third design (docs/results/headline_v3_plan.md): stage 0 (an SFT run per
seed), then CE continued, pass@1 RL, pass@k RL and polychromic from that seed's adapter, on
the experiment files ``headline_v3_*``; the report (:mod:`polylora.report.headline_v3_report`)
is written from two committed tables. The steps, resume and provenance checks are the second
design's recipe (:mod:`polylora.recipes.headline_v2`).
"""

from __future__ import annotations

from polylora.recipes.headline_v2 import Recipe

#: The third design. No temperature sweep by default (its cost goes to seeds); the seeds
#: are the plan's.
V3 = Recipe("headline_v3", "--v3",
            "The headline's third design: SFT per seed, then CE / pass@1 RL / pass@k RL / "
            "polychromic from it (N = 8), the manipulation check and the report.",
            seeds="1,2,3,4,5,6,7,8,9,10", temperatures="", sweep_arms="", sesoi=0.05,
            report_module="polylora.report.headline_v3_report")
