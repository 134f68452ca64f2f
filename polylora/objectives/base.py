"""The objective interface: one small contract between the Trainer and any loss."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from polylora.data.checking import Checker
from polylora.data.example import Example
from polylora.data.formatting import PromptFormat


@dataclass
class LossOutput:
    """The loss to backpropagate (already scaled for gradient accumulation) and scalars to log."""

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class ObjectiveContext:
    """What an objective may need besides the batch: the task's examples, checker, tokenizer."""

    tokenizer: PreTrainedTokenizerBase
    examples: Sequence[Example]  # the training examples, indexed by the batch's example_index
    prompt_format: PromptFormat
    checker: Checker | None = None
    max_length: int = 128
    extras: dict[str, Any] = field(default_factory=dict)


#: The Trainer's backward (``accelerator.backward``): an objective may backpropagate parts of
#: its loss itself (micro-batches, to bound memory) and return the rest.
Backward = Callable[[torch.Tensor], Any]


class Objective(ABC):
    """A training loss. ``compute_loss`` receives a right-padded batch with ``input_ids``,
    ``attention_mask``, ``labels`` (-100 on prompt tokens) and ``example_index``, and from the
    Trainer the optimizer step it is on and its backward (both None outside a Trainer)."""

    name: str = "objective"
    needs_checker: bool = False

    def check_data(self, has_checker: bool) -> None:  # noqa: B027 (optional hook)
        """Raise ConfigError if this objective cannot work with the configured data (called
        once per run, by :func:`polylora.train.preparation.prepare`, before any model loads)."""

    def bind(self, context: ObjectiveContext) -> None:
        """Receive the training context once, before the first step."""
        self.context = context

    def params(self) -> dict[str, Any]:
        """The objective's settings, logged as MLflow params."""
        return {"name": self.name}

    @abstractmethod
    def compute_loss(
        self,
        model: torch.nn.Module,
        batch: dict[str, torch.Tensor],
        num_items_in_batch: int | torch.Tensor | None,
        grad_accum_steps: int,
        *,
        step: int | None = None,
        backward: Backward | None = None,
    ) -> LossOutput:
        """The loss of one micro-batch, scaled so that summing over the accumulation window
        gives the window's loss. ``step``: the Trainer's optimizer step (``global_step``,
        restored by ``train.resume``); None: the objective counts its own calls.
        ``backward``: the Trainer's backward for parts backpropagated here; None: return the
        whole loss."""
