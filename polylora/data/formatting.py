"""Prompt rendering and tokenization: loss only on response tokens, left-padded prompts for
generation, right-padded batches for training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from polylora.data.example import Example

IGNORE_INDEX = -100


@dataclass(frozen=True)
class PromptFormat:
    """How examples become model input: chat template or plain text, optional few-shot turns."""

    style: str = "chat"  # chat | plain
    system_prompt: str | None = None
    shots: tuple[Example, ...] = ()


def _messages(prompt: str | tuple[dict[str, str], ...]) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [dict(m) for m in prompt]


def render_prompt(example: Example, tok: PreTrainedTokenizerBase, fmt: PromptFormat) -> str:
    """The exact text the model sees before its answer (generation prompt included)."""
    if fmt.style == "plain":
        shots = "".join(f"{_plain(s.prompt)}\n{s.response}\n\n" for s in fmt.shots)
        head = f"{fmt.system_prompt}\n\n" if fmt.system_prompt else ""
        return f"{head}{shots}{_plain(example.prompt)}\n"
    messages: list[dict[str, str]] = []
    if fmt.system_prompt:
        messages.append({"role": "system", "content": fmt.system_prompt})
    for shot in fmt.shots:
        messages += _messages(shot.prompt)
        messages.append({"role": "assistant", "content": shot.response})
    messages += _messages(example.prompt)
    return tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def _plain(prompt: str | tuple[dict[str, str], ...]) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(m["content"] for m in prompt)


def response_suffix(tok: PreTrainedTokenizerBase, fmt: PromptFormat) -> str:
    """What ends an answer in training targets: the end-of-turn token (taught to stop)."""
    return tok.eos_token or ""


def encode_example(
    example: Example, tok: PreTrainedTokenizerBase, fmt: PromptFormat, max_length: int
) -> dict[str, list[int]]:
    """input_ids and labels where prompt positions are IGNORE_INDEX (loss on the answer only)."""
    prompt_ids = tok(render_prompt(example, tok, fmt), add_special_tokens=False)["input_ids"]
    answer_ids = tok(example.response + response_suffix(tok, fmt), add_special_tokens=False)[
        "input_ids"
    ]
    budget_for_prompt = max(max_length - len(answer_ids), max_length // 2)
    if len(prompt_ids) > budget_for_prompt:
        prompt_ids = prompt_ids[-budget_for_prompt:]
    input_ids = (prompt_ids + answer_ids)[:max_length]
    labels = ([IGNORE_INDEX] * len(prompt_ids) + answer_ids)[:max_length]
    return {"input_ids": input_ids, "labels": labels}


class EncodedDataset(torch.utils.data.Dataset):
    """Tokenized examples, kept with their source records (ids, groups) for samplers."""

    def __init__(
        self,
        examples: Sequence[Example],
        tok: PreTrainedTokenizerBase,
        fmt: PromptFormat,
        max_length: int,
    ) -> None:
        self.examples = list(examples)
        self.items = [encode_example(e, tok, fmt, max_length) for e in self.examples]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.items[index]


@dataclass
class PaddingCollator:
    """Right-pads input_ids/labels into tensors with an attention mask."""

    pad_token_id: int

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for i, f in enumerate(features):
            n = len(f["input_ids"])
            ids[i, :n] = torch.tensor(f["input_ids"])
            labels[i, :n] = torch.tensor(f["labels"])
            mask[i, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def left_pad(
    sequences: Sequence[Sequence[int]], pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded prompt ids and mask, so generated tokens line up at the right edge."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, s in enumerate(sequences):
        if s:
            ids[i, width - len(s) :] = torch.tensor(list(s))
            mask[i, width - len(s) :] = 1
    return ids, mask
