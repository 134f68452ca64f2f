"""Model loading: the tiny model in code, LoRA wrapping, adapter errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import tiny_configs
from omegaconf import OmegaConf

from polylora.errors import PolyloraError
from polylora.models import (
    build_tiny_tokenizer,
    count_parameters,
    load_adapter,
    load_base_model,
    wrap_lora,
)

TINY, CPU, LORA = tiny_configs()


def test_tiny_tokenizer_roundtrip_and_chat_template() -> None:
    tok = build_tiny_tokenizer()
    text = "Name an English word that starts with 'q'."
    assert tok.decode(tok(text)["input_ids"]) == text
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert len(tok) < 512


def test_tiny_model_is_seeded() -> None:
    m1, _ = load_base_model(TINY, CPU)
    m2, _ = load_base_model(TINY, CPU)
    for (n1, p1), (_, p2) in zip(m1.named_parameters(), m2.named_parameters(), strict=True):
        assert torch.equal(p1, p2), n1


def test_lora_freezes_base_and_targets_all_linear() -> None:
    model, _ = load_base_model(TINY, CPU)
    peft = wrap_lora(model, LORA, CPU)
    trainable, total = count_parameters(peft)
    names = [n for n, p in peft.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)
    assert any("q_proj" in n for n in names) and any("down_proj" in n for n in names)
    assert 0 < trainable < total


def test_adapter_errors_are_clear(tmp_path: Path) -> None:
    model, _ = load_base_model(TINY, CPU)
    with pytest.raises(PolyloraError, match="not an adapter folder"):
        load_adapter(model, str(tmp_path), trainable=False)
    # An adapter saved for a wider model does not fit this one.
    wide = OmegaConf.merge(TINY, {"hidden_size": 64, "intermediate_size": 96})
    big, _ = load_base_model(wide, CPU)
    wrap_lora(big, LORA, CPU).save_pretrained(tmp_path / "wide")
    with pytest.raises(PolyloraError, match="does not match"):
        load_adapter(model, str(tmp_path / "wide"), trainable=False)
