"""Loss masks cover the answer only; padding helpers line prompts up correctly."""

from __future__ import annotations

from polylora.data.example import Example
from polylora.data.formatting import (
    IGNORE_INDEX,
    PaddingCollator,
    PromptFormat,
    encode_example,
    left_pad,
    render_prompt,
)
from polylora.models import build_tiny_tokenizer


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
