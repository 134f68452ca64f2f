"""``polylora judge --baseline-run A --candidate-run B``: the pairwise LLM judge of two runs."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from polylora.judge.runs import judge_rows, load_run_rows, log_result
from polylora.judge.settings import DEFAULT_MODEL, JudgeConfig
from polylora.record.names import DEFAULT_TRACKING_URI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """CLI flags of ``polylora judge``."""
    parser.add_argument("--baseline-run", required=True, help="MLflow run id of the baseline")
    parser.add_argument("--candidate-run", required=True, help="MLflow run id to judge")
    parser.add_argument("--tracking-uri",
                        default=os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_TRACKING_URI))
    parser.add_argument("--answers", choices=("greedy", "first_sample"), default="greedy")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--max-calls", type=int, default=JudgeConfig.max_calls)
    parser.add_argument("--max-cost-usd", type=float, default=JudgeConfig.max_cost_usd)
    parser.add_argument("--price-per-mtok-in", type=float, default=None,
                        help="USD per million input tokens (required for a model not in the "
                        "price table)")
    parser.add_argument("--price-per-mtok-out", type=float, default=None,
                        help="USD per million output tokens")
    parser.add_argument("--base-url", default=None, help="API base URL (default: the SDK's)")
    parser.add_argument("--out", default="reports/judge", help="where judge.jsonl is written")
    parser.add_argument("--no-log", action="store_true", help="don't log to the candidate run")


def run(args: argparse.Namespace) -> int:
    """Judge, print the headline numbers, log them to the candidate run."""
    cfg = JudgeConfig(model=args.model, max_calls=args.max_calls,
                      max_cost_usd=args.max_cost_usd, base_url=args.base_url,
                      price_per_mtok_in=args.price_per_mtok_in,
                      price_per_mtok_out=args.price_per_mtok_out)
    result = judge_rows(load_run_rows(args.baseline_run, args.tracking_uri),
                        load_run_rows(args.candidate_run, args.tracking_uri), cfg, args.answers)
    if result is None:  # no key: judge_pairwise already said so
        return 0
    for key, value in sorted(result.to_metrics().items()):
        print(f"{key}\t{value:.4g}" if isinstance(value, float) else f"{key}\t{value}")
    if not args.no_log:
        log_result(result, args.candidate_run, Path(args.out), args.tracking_uri)
    return 0
