"""python bench/sandbox_overhead.py [--programs 20] [--rounds 3]

Wall time per HumanEval check in the bubblewrap jail (``polylora.metrics.sandbox.run_tests``)
against the same harness in a plain subprocess (the ``unsafe_ok`` path, no namespaces),
interleaved in one process on the same canonical solutions, and the ratio of medians. Run by
hand, not in CI (machines are noisy: compare the ratio, not absolute times).
"""

from __future__ import annotations

import argparse
import statistics
import time

from polylora.metrics import sandbox
from polylora.metrics.code_exec import build_candidate, load_humaneval_examples


def _time_all(examples: list, unsafe: bool) -> float:
    started = time.perf_counter()
    for e in examples:
        f = e.fields
        candidate = build_candidate(f["prompt"], e.response, f["entry_point"])
        if unsafe:  # the same harness without the jail: what unsafe_ok runs
            saved = sandbox._probe
            sandbox._probe = lambda _bwrap: "benchmark: no jail"  # type: ignore[assignment]
            try:
                result = sandbox.run_tests(
                    candidate, f["test"], f["entry_point"], prelude=f["prompt"], unsafe_ok=True
                )
            finally:
                sandbox._probe = saved  # type: ignore[assignment]
        else:
            result = sandbox.run_tests(candidate, f["test"], f["entry_point"], prelude=f["prompt"])
        assert result.passed, (e.id, result)
    return (time.perf_counter() - started) / len(examples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    problem = sandbox.jail_problem()
    if problem:
        raise SystemExit(f"no jail here: {problem}")
    import logging

    logging.getLogger("polylora.metrics.sandbox").setLevel(logging.ERROR)
    examples = load_humaneval_examples(limit=args.programs)
    jail, plain = [], []
    for _ in range(args.rounds):
        plain.append(_time_all(examples, unsafe=True))
        jail.append(_time_all(examples, unsafe=False))
    j, p = statistics.median(jail), statistics.median(plain)
    print(
        f"per check: jail {j * 1000:.0f} ms, plain subprocess {p * 1000:.0f} ms, "
        f"ratio {j / p:.2f} ({args.programs} programs x {args.rounds} rounds)"
    )


if __name__ == "__main__":
    main()
