"""pass@k: the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models
Trained on Code"), never "any of the first k samples is correct".
"""

from __future__ import annotations

from collections.abc import Sequence

from polylora.errors import ConfigError


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n is correct.

    ``1 - C(n-c, k) / C(n, k)`` computed as the stable product ``1 - prod_{i=n-c+1}^{n}
    (1 - k/i)`` (no huge binomials). ``c`` = number of correct samples among ``n``.
    """
    for label, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"pass@k: {label} must be an integer, got {value!r}")
    if k < 1:
        raise ConfigError(f"pass@k: k must be ≥ 1, got k={k}")
    if not 0 <= c <= n:
        raise ConfigError(f"pass@k: need 0 ≤ c ≤ n, got n={n}, c={c}")
    if k > n:
        raise ConfigError(
            f"pass@{k} needs at least {k} samples per prompt but only n={n} were drawn; "
            f"raise the number of samples (eval.n_samples ≥ {k}) or drop pass@{k}"
        )
    if n - c < k:  # every k-subset contains a correct sample (also covers c == n)
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):  # empty when c == 0 → pass@k = 0
        prod *= 1.0 - k / i
    return 1.0 - prod


def pass_at_k_per_prompt(correct: Sequence[bool], k: int) -> float:
    """pass@k of one prompt from its per-sample verdicts."""
    return pass_at_k(len(correct), sum(bool(x) for x in correct), k)
