"""Sampling a step's sets: each training prompt's token ids (rendered once per example and
cached), N samples per prompt in one batched call, and the distinct-answer fraction that
stands in for a set's diversity when the scoring gives none."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from polylora.data.formatting import render_prompt
from polylora.model.generation import SamplingParams, sample
from polylora.objectives.base import ObjectiveContext


class PromptCache:
    """Token ids of each example's rendered prompt (as the evaluation renders it for
    sampling, no truncation), computed once per training-set index."""

    def __init__(self) -> None:
        self.ids: dict[int, list[int]] = {}

    def clear(self) -> None:
        """Forget every prompt (the cache belongs to one training set)."""
        self.ids.clear()

    def lookup(self, context: ObjectiveContext, example_indices: Sequence[int]
               ) -> list[list[int]]:
        """The prompt ids of ``context.examples[i]`` for each index, rendering new ones."""
        out = []
        for index in example_indices:
            if index not in self.ids:
                text = render_prompt(context.examples[index], context.tokenizer,
                                     context.prompt_format)
                self.ids[index] = list(
                    context.tokenizer(text, add_special_tokens=False)["input_ids"]
                )
            out.append(self.ids[index])
        return out


def sample_sets(
    model: torch.nn.Module, tokenizer: PreTrainedTokenizerBase, prompt_ids: list[list[int]],
    params: SamplingParams,
) -> tuple[list[list[list[int]]], list[list[str]]]:
    """``params.n`` samples per prompt in one batched ``generation.sample`` call (no grad,
    eval mode): their token ids and texts."""
    out = sample(model, tokenizer, prompt_ids, params, batch_size=max(len(prompt_ids), 1))
    return out.token_ids, out.texts


def distinct_fraction(texts: Sequence[str]) -> float:
    """(#distinct answers − 1) / (N − 1): 0 when all alike, 1 when all differ."""
    if len(texts) < 2:
        return 0.0
    return (len({t.strip().lower() for t in texts}) - 1) / (len(texts) - 1)
