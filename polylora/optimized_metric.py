"""What a run returns to a search: ``optimized_metric`` as a list of names, and which split
(train, validation, test) each name is computed on. The pipeline uses it to return the value;
the sweeper uses it to refuse searching on the test split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from polylora.errors import ConfigError

#: Names of the validation loss curve (early stopping's metric): validation, not test.
VALIDATION_LOSS = ("eval/loss", "eval/perplexity", "val/loss", "val/perplexity")


def optimized_metrics(value: Any) -> list[str]:
    """``optimized_metric`` as a list: one name, or a list of names (a multi-objective sweep,
    e.g. ``+hparams_search=pareto``). Raises ConfigError for anything else."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigError(
        f"optimized_metric must be a metric name or a list of names, got {value!r}"
    )


def metric_split(name: str) -> str:
    """Which split ``optimized_metric`` is computed on: ``"validation"`` (``val/<metric>``:
    the fixed validation eval subset; ``eval/loss``: the validation loss curve), ``"train"``
    (``train/...``) or ``"test"`` (``eval/<metric>`` or a bare name: the final evaluation)."""
    n = name.strip()
    if n.startswith("train/"):
        return "train"
    if n.startswith("val/") or n in VALIDATION_LOSS:
        return "validation"
    return "test"


def validation_name(name: str) -> str:
    """The validation counterpart of a test metric: ``eval/pass_at_10`` → ``val/pass@10``."""
    from polylora.metrics.registry import canonical_name

    key = canonical_name(name)
    return {"test_loss": "val/loss", "test_perplexity": "val/perplexity"}.get(key, f"val/{key}")


def check_search_metrics(metrics: Sequence[str]) -> None:
    """Refuse a search whose ``optimized_metric`` is computed on the test split: selecting
    hyperparameters on the data the final numbers are reported on biases them upward."""
    test = [m for m in metrics if metric_split(m) == "test"]
    if test:
        fixed = [validation_name(m) if m in test else m for m in metrics]
        shown = fixed[0] if len(fixed) == 1 else "[" + ",".join(fixed) + "]"
        raise ConfigError(
            f"optimized_metric={','.join(test)} is computed on the test split, which a search "
            f"must not select on (test metrics are for the final report); optimize the "
            f"validation copy instead: optimized_metric={shown} (scored on "
            "eval.val_subset_size prompts of the validation split, fixed by id)"
        )
