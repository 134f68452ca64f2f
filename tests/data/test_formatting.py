"""Loss masks cover the answer only; padding helpers line prompts up correctly."""

from __future__ import annotations

import pytest

from polylora.data.example import Example
from polylora.data.formatting import (
    IGNORE_INDEX,
    EncodedDataset,
    PaddingCollator,
    PromptFormat,
    encode_example,
    left_pad,
    prompt_token_ids,
    render_prompt,
)
from polylora.errors import DataError
from polylora.model.loading import build_tiny_tokenizer


def test_labels_cover_only_the_response_and_end_token() -> None:
    tok = build_tiny_tokenizer()
    ex = Example(id="a", prompt="Name a word.", response="bread")
    enc = encode_example(ex, tok, PromptFormat(), max_length=128)
    labelled = [
        t for t, lab in zip(enc["input_ids"], enc["labels"], strict=True) if lab != IGNORE_INDEX
    ]
    assert tok.decode(labelled) == "bread<|im_end|>"
    prompt_len = enc["labels"].index(next(x for x in enc["labels"] if x != IGNORE_INDEX))
    assert tok.decode(enc["input_ids"][:prompt_len]).endswith("<|im_start|>assistant\n")


def test_few_shot_and_plain_formats() -> None:
    tok = build_tiny_tokenizer()
    shot = Example(id="s", prompt="Q1", response="A1")
    ex = Example(id="a", prompt="Q2", response="A2")
    chat = render_prompt(ex, tok, PromptFormat(shots=(shot,)))
    assert chat.index("Q1") < chat.index("A1") < chat.index("Q2")
    plain = render_prompt(ex, tok, PromptFormat(style="plain", shots=(shot,)))
    assert plain == "Q1\nA1\n\nQ2\n"


def test_truncation_keeps_the_answer() -> None:
    tok = build_tiny_tokenizer()
    ex = Example(id="a", prompt="word " * 200, response="bread")
    enc = encode_example(ex, tok, PromptFormat(), max_length=32)
    assert len(enc["input_ids"]) <= 32
    assert any(lab != IGNORE_INDEX for lab in enc["labels"])


def test_truncation_is_counted_per_split() -> None:
    tok = build_tiny_tokenizer()
    fmt = PromptFormat(style="plain")
    short = Example(id="s", prompt="Q", response="bread")
    long_prompt = Example(id="p", prompt="w" * 100, response="bread")
    long_answer = Example(id="r", prompt="Q", response="x" * 100)
    data = EncodedDataset([short, long_prompt, long_answer], tok, fmt, max_length=32)
    full = [
        len(tok(render_prompt(e, tok, fmt), add_special_tokens=False)["input_ids"])
        for e in (long_prompt, long_answer)
    ]
    answer_lens = [
        len(tok(e.response + tok.eos_token, add_special_tokens=False)["input_ids"])
        for e in (long_prompt, long_answer)
    ]
    kept = [len(item["input_ids"]) for item in data.items[1:]]
    assert kept == [32, 32]
    t = data.truncation
    assert (t.examples, t.total) == (2, 3)
    # the long prompt lost its start; the long answer its end (the prompt keeps >= half)
    assert t.prompt_tokens_lost == full[0] - (32 - answer_lens[0])
    assert t.response_tokens_lost == answer_lens[1] - (32 - full[1])
    line = t.summary("train", 32)
    assert line is not None and "2 of 3 examples" in line and "data.max_length=32" in line
    assert t.metrics("train")["data/truncated_train"] == 2.0
    assert EncodedDataset([short], tok, fmt, 32).truncation.summary("train", 32) is None


def test_generation_prompt_is_truncated_like_training() -> None:
    tok = build_tiny_tokenizer()
    ex = Example(id="p", prompt="w" * 100, response="bread")
    enc = encode_example(ex, tok, PromptFormat(), max_length=32)
    ids = prompt_token_ids(ex, tok, PromptFormat(), max_length=32)
    assert ids == enc["input_ids"][: len(ids)]
    assert enc["labels"][len(ids)] != IGNORE_INDEX and enc["labels"][len(ids) - 1] == IGNORE_INDEX


def test_an_example_without_response_tokens_is_an_error() -> None:
    tok = build_tiny_tokenizer()
    empty = Example(id="e1", prompt="Q", response="  ")
    with pytest.raises(DataError, match="'e1' has an empty response"):
        EncodedDataset([empty], tok, PromptFormat(), max_length=32)


def test_padding() -> None:
    batch = PaddingCollator(pad_token_id=0)(
        [
            {"input_ids": [5, 6, 7], "labels": [-100, 6, 7]},
            {"input_ids": [5], "labels": [5]},
        ]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 6, 7], [5, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    ids, mask = left_pad([[1, 2], [3]], 0)
    assert ids.tolist() == [[1, 2], [0, 3]] and mask.tolist() == [[1, 1], [0, 1]]
