"""Non-Hydra subcommands: ``polylora compare|diagnose|merge|judge|doctor ...``.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; this file only dispatches. Bad input prints one
``polylora: error: ...`` line and exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from polylora.errors import PolyloraError

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "compare": ("polylora.report.compare", "compare groups of MLflow runs with statistics"),
    "plan": ("polylora.report.plan",
             "seeds × prompts × samples a target effect needs, from a pilot comparison"),
    "diagnose": ("polylora.cli.diagnose", "apply the overfitting decision matrix to a run"),
    "merge": ("polylora.cli.merge", "merge trained adapters and evaluate the result"),
    "judge": ("polylora.cli.judge", "pairwise LLM judge of two runs' generations"),
    "cluster": ("polylora.cli.cluster", "assign clusters to a JSONL file from MiniLM embeddings"),
    "doctor": ("polylora.cli.doctor", "check the installation: one line per check, with the fix"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per available subcommand."""
    parser = argparse.ArgumentParser(prog="polylora", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``polylora`` console script and ``python -m polylora.cli.main``."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from polylora.record.redaction import install_log_redaction

    install_log_redaction()
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except PolyloraError as exc:
        print(f"polylora: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
