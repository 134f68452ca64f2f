"""Prompt rendering and tokenization: loss only on response tokens, left-padded prompts for
generation, right-padded batches for training."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from polylora.data.example import Example
from polylora.errors import DataError
from polylora.record import names

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
    return str(tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))


def _plain(prompt: str | tuple[dict[str, str], ...]) -> str:
    if isinstance(prompt, str):
        return prompt
    return "\n".join(m["content"] for m in prompt)


def response_suffix(tok: PreTrainedTokenizerBase, fmt: PromptFormat) -> str:
    """What ends an answer in training targets: the end-of-turn token (taught to stop)."""
    return tok.eos_token or ""


def _prompt_budget(max_length: int, answer_len: int) -> int:
    """Prompt tokens kept: all the answer needs is left, but never less than half the window
    (a long answer is cut at its end instead)."""
    return max(max_length - answer_len, max_length // 2)


def _encode(
    example: Example, tok: PreTrainedTokenizerBase, fmt: PromptFormat, max_length: int
) -> tuple[dict[str, list[int]], int, int]:
    """(input_ids + labels, prompt tokens cut, response tokens cut) for one example."""
    prompt_ids = tok(render_prompt(example, tok, fmt), add_special_tokens=False)["input_ids"]
    answer_ids = tok(example.response + response_suffix(tok, fmt), add_special_tokens=False)[
        "input_ids"
    ]
    budget_for_prompt = _prompt_budget(max_length, len(answer_ids))
    prompt_lost = max(len(prompt_ids) - budget_for_prompt, 0)
    if prompt_lost:
        prompt_ids = prompt_ids[-budget_for_prompt:]  # keep the end: the question itself
    kept_answer = answer_ids[: max(max_length - len(prompt_ids), 0)]
    item = {
        "input_ids": prompt_ids + kept_answer,
        "labels": [IGNORE_INDEX] * len(prompt_ids) + kept_answer,
    }
    return item, prompt_lost, len(answer_ids) - len(kept_answer)


def encode_example(
    example: Example, tok: PreTrainedTokenizerBase, fmt: PromptFormat, max_length: int
) -> dict[str, list[int]]:
    """input_ids and labels where prompt positions are IGNORE_INDEX (loss on the answer only).

    Over ``max_length`` tokens, the prompt loses its beginning (down to half the window) and
    then the answer its end; :class:`EncodedDataset` counts what was cut.
    """
    return _encode(example, tok, fmt, max_length)[0]


def prompt_token_ids(
    example: Example, tok: PreTrainedTokenizerBase, fmt: PromptFormat, max_length: int
) -> list[int]:
    """The prompt tokens generation starts from: the same (left-truncated) prompt the model
    sees in training and in the reference loss, so evaluation truncates as training does."""
    item = encode_example(example, tok, fmt, max_length)
    n_prompt = sum(1 for label in item["labels"] if label == IGNORE_INDEX)
    return item["input_ids"][:n_prompt]


@dataclass(frozen=True)
class Truncation:
    """What fitting a split into ``data.max_length`` tokens cut."""

    examples: int  # examples that lost any token
    prompt_tokens_lost: int
    response_tokens_lost: int
    total: int  # examples in the split

    def summary(self, split: str, max_length: int) -> str | None:
        """One log line, or None when nothing was cut."""
        if not self.examples:
            return None
        return (
            f"{split}: {self.examples} of {self.total} examples are longer than "
            f"data.max_length={max_length} tokens; cut {self.prompt_tokens_lost} prompt tokens "
            f"(from the start) and {self.response_tokens_lost} response tokens (from the end). "
            "Raise data.max_length to keep them."
        )

    def metrics(self, split: str) -> dict[str, float]:
        """``data/truncated_<split>`` and the tokens lost, for MLflow."""
        return {
            names.truncated_metric(split): float(self.examples),
            names.prompt_tokens_lost_metric(split): float(self.prompt_tokens_lost),
            names.response_tokens_lost_metric(split): float(self.response_tokens_lost),
        }


class EncodedDataset(torch.utils.data.Dataset):
    """Tokenized examples, kept with their source records (ids, groups) for samplers.

    ``truncation`` counts what ``max_length`` cut. An example left with no response token (or
    an empty response) is a DataError: it would train with a silent zero loss.
    """

    def __init__(
        self,
        examples: Sequence[Example],
        tok: PreTrainedTokenizerBase,
        fmt: PromptFormat,
        max_length: int,
    ) -> None:
        self.examples = list(examples)
        self.items: list[dict[str, list[int]]] = []
        cut = prompt_lost = response_lost = 0
        for e in self.examples:
            item, p_lost, r_lost = _encode(e, tok, fmt, max_length)
            if not e.response.strip() or all(x == IGNORE_INDEX for x in item["labels"]):
                why = "an empty response" if not e.response.strip() else "no response token left"
                raise DataError(
                    f"example {e.id!r} has {why} within data.max_length={max_length}; "
                    "give it a response, raise data.max_length or drop the example"
                )
            cut += bool(p_lost or r_lost)
            prompt_lost += p_lost
            response_lost += r_lost
            self.items.append(item)
        self.truncation = Truncation(cut, prompt_lost, response_lost, len(self.items))

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
