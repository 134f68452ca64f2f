"""A model an evaluation-only job scores as its caller built it (a routed mixture of
adapters), and the builder the job calls for it inside its MLflow run
(:func:`polylora.run.pipeline.execute`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from omegaconf import DictConfig

from polylora.evaluate.evaluation import AdapterHook
from polylora.evaluate.loop import RowFields
from polylora.train.preparation import Prepared


@dataclass
class GivenModel:
    """A model an evaluation-only job scores as it is, built by the caller: ``adapter`` picks
    each prompt's adapters, ``row_fields`` adds to its ``generations.jsonl`` row, ``metrics``
    (known before the evaluation, e.g. each adapter's routing share) are recorded with it."""

    model: Any
    tokenizer: Any
    adapter: AdapterHook | None = None
    row_fields: RowFields | None = None
    metrics: dict[str, float] = field(default_factory=dict)


class ModelBuilder(Protocol):
    """Builds a job's :class:`GivenModel` from its config and prepared data (the data tells a
    router which prompts to route); called inside the job's MLflow run."""

    def __call__(self, cfg: DictConfig, prep: Prepared) -> GivenModel: ...
