"""The builtin triage task as a data source (``polylora/conf/data/triage.yaml``).

Wraps :func:`polylora.data.triage.generate_triage_examples` in the ``_target_`` node shape the
pipeline builds (``build(cfg.data.source).load() -> list[Example]``). Each example carries the
three labels in ``fields`` (severity / component / reproducibility, checked by
``FieldChecker``) and its synthetic reporter in ``group`` (for group-aware splits and the
group-balanced sampler).
"""

from __future__ import annotations

from polylora.data.example import Example
from polylora.data.triage import FIELD_NAMES, generate_triage_examples
from polylora.errors import ConfigError

__all__ = ["FIELD_NAMES", "TriageSource"]


class TriageSource:
    """``n_examples`` synthetic bug reports with three labelled fields, deterministic in seed."""

    def __init__(self, n_examples: int = 300, seed: int = 0) -> None:
        if isinstance(n_examples, bool) or not isinstance(n_examples, int) or n_examples < 1:
            raise ConfigError(f"data.source.n_examples must be an integer >= 1, got {n_examples!r}")
        self.n_examples = n_examples
        self.seed = seed

    def load(self) -> list[Example]:
        """Generate the examples (same seed → same reports, labels and reporters)."""
        return generate_triage_examples(self.n_examples, seed=self.seed)
