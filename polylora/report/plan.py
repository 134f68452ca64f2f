"""``polylora plan``: from a pilot comparison, how many seeds × prompts × samples a target
effect needs.

Reads the pilot's runs like ``polylora compare`` (two groups that share seeds and logged
per-prompt scores), estimates the variance components of the per-(seed, prompt) differences on
one metric (:func:`polylora.stats.intervals.variance_components`), and prints the pilot's own
MDE and the cheapest designs whose MDE at the requested power is at most ``--target``
(:func:`polylora.stats.power.plan`; the assumptions are in that module's docstring)::

    polylora plan --experiment headline --baseline headline_ce --metric pass@10 --target 0.05
"""

from __future__ import annotations

import argparse
import math
import sys

from polylora.errors import PolyloraError
from polylora.record import reader as mlruns
from polylora.render.markdown import table
from polylora.report.comparison.store import choose_baseline, collect_runs
from polylora.stats import analysis, power

__all__ = ["add_arguments", "run"]


def _ints(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise PolyloraError(f"{text!r}: expected comma-separated whole numbers, e.g. 3,5,10") \
            from None
    if not values or min(values) < 1:
        raise PolyloraError(f"{text!r}: every count must be ≥ 1")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``polylora plan`` options."""
    parser.add_argument("--experiment", required=True, help="MLflow experiment of the pilot")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: $MLFLOW_TRACKING_URI or "
                        f"{mlruns.DEFAULT_TRACKING_URI})")
    parser.add_argument("--filter", default=None, help="MLflow filter string for the pilot runs")
    parser.add_argument("--group-by", default=mlruns.GROUP_TAG, help="grouping tag")
    parser.add_argument("--baseline", default=None, help="baseline group")
    parser.add_argument("--candidate", default=None,
                        help="candidate group (default: the only other group)")
    parser.add_argument("--metric", default=None,
                        help="metric to plan for (default: the runs' compare.primary)")
    parser.add_argument("--target", type=float, required=True,
                        help="smallest |Δ| to detect, in the metric's units (e.g. 0.05)")
    parser.add_argument("--alpha", type=float, default=0.05, help="two-sided test level")
    parser.add_argument("--power", type=float, default=0.80, help="power (default 0.8)")
    parser.add_argument("--seeds", default=None, help="seed counts to try, e.g. 3,5,10,20")
    parser.add_argument("--prompts", default=None, help="prompt counts to try")
    parser.add_argument("--samples", default=None, help="samples per prompt to try")
    parser.add_argument("--pilot-samples", type=int, default=None,
                        help="samples per prompt of the pilot (default: its eval.n_samples)")
    parser.add_argument("--top", type=int, default=10, help="designs to list (default 10)")


def run(args: argparse.Namespace) -> int:
    """Estimate the pilot's variance components and print the designs that reach the target."""
    if not args.target > 0:
        raise PolyloraError(f"--target must be > 0 (an effect in the metric's units), got "
                            f"{args.target}")
    client = mlruns.get_client(args.tracking_uri)
    selected = mlruns.select_runs(client, args.experiment, args.filter)
    grouped, _ = mlruns.group_runs(selected, args.group_by)
    if len(grouped) < 2:
        raise PolyloraError(
            f"a plan needs a pilot with two groups (baseline and candidate) in experiment "
            f"{args.experiment!r}; found {len(grouped)}: {', '.join(grouped) or 'none'}"
        )
    baseline = choose_baseline(grouped, args.baseline)
    others = [g for g in grouped if g != baseline]
    candidate = args.candidate or (others[0] if len(others) == 1 else None)
    if candidate not in grouped or candidate == baseline:
        raise PolyloraError(f"pass --candidate, one of: {', '.join(others)}")
    infos = [*grouped[baseline], *grouped[candidate]]
    metric = args.metric and mlruns.canonical_metric(args.metric)
    if not metric:
        plans = [p for p in (analysis.Plan.from_params(r.params) for r in infos) if p]
        metric = plans[0].primary if plans and plans[0].primary else None
    if not metric:
        raise PolyloraError("no --metric given and the runs declared no compare.primary; "
                            "pass --metric, e.g. --metric pass@10")
    pick = {baseline: grouped[baseline], candidate: grouped[candidate]}
    data, _ = collect_runs(client, pick, [metric], curves=False)
    base = [r for r in data if r.group == baseline]
    cand = [r for r in data if r.group == candidate]
    effect = analysis.estimate(base, cand, metric, 0.95)
    if effect.components is None:
        raise PolyloraError(
            f"{metric}: the pilot has no per-prompt scores on seeds both groups ran "
            f"({effect.method}); a plan needs ≥ 2 shared seeds and eval/generations.jsonl in "
            "every run"
        )
    vc = effect.components
    n_pilot = args.pilot_samples or int(float(infos[0].params.get("eval.n_samples", "0")))
    if n_pilot < 1:
        raise PolyloraError("the pilot runs did not log eval.n_samples; pass --pilot-samples N")
    seeds = _ints(args.seeds) or (2, 3, 4, 5, 6, 8, 10, 12, 16, 20)
    designs = power.plan(vc, n_pilot, args.target, args.alpha, args.power, seeds=seeds,
                         prompts=_ints(args.prompts), samples=_ints(args.samples))
    pilot_mde = power.mde(effect.se, effect.df, args.alpha, args.power) if effect.se > 0 \
        else math.nan
    print(f"# Plan for {metric}: {candidate} vs {baseline} (pilot: {vc.n_seeds} seeds × "
          f"{vc.n_prompts} prompts × {n_pilot} samples)\n")
    print(f"pilot Δ = {effect.delta:+.4f} [{effect.low:+.4f}, {effect.high:+.4f}] (crossed "
          f"seeds × prompts, df {effect.df:.1f})")
    print(f"variance components of the differences: seed {vc.seed:.3g}, prompt {vc.prompt:.3g},"
          f" residual {vc.residual:.3g}")
    print(f"this design can detect |Δ| ≥ {pilot_mde:.4f} {metric} ({args.power:.0%} power, "
          f"two-sided α = {args.alpha:g})\n")
    if not designs:
        floor = math.sqrt(vc.seed / max(seeds))
        print(f"no design in the grid detects {args.target:g}: with {max(seeds)} seeds the "
              f"seed variance alone leaves SE ≥ {floor:.4f}; add seeds (--seeds) or lower the "
              "seed variance (e.g. longer training)")
        return 0
    print(f"designs that detect |Δ| ≥ {args.target:g} (cheapest first: generations = seeds × "
          "prompts × samples per arm):\n")
    rows = [[d.seeds, d.prompts, d.samples, f"{d.se:.4f}", f"{d.df:.1f}", f"{d.mde:.4f}"]
            for d in designs[: args.top]]
    print("\n".join(table(["seeds", "prompts", "samples", "SE", "df", "MDE"], rows)))
    print("\nsamples per prompt scale only the residual (assumed sampling noise: exact for a "
          "mean over samples such as pass@1, optimistic for pass@k with k > 1)")
    sys.stdout.flush()
    return 0

