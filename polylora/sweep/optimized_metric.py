"""What a run returns to a search: ``optimized_metric`` as a list of names, and which split
(train, validation, test) each name is computed on. The pipeline uses it to return the value;
the sweeper uses it to refuse searching on the test split.
"""

from __future__ import annotations

from collections.abc import Sequence

from polylora.errors import ConfigError
from polylora.record.names import (  # noqa: F401  (the record holds these names)
    VALIDATION_LOSS,
    metric_split,
    optimized_metrics,
    validation_name,
)


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
