"""Where bf16 autocast pays, and the frozen weights stored in bf16 for it."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_configs

from polylora.model.loading import load_base_model, wrap_lora
from polylora.model.precision import bf16_autocast_pays, store_frozen_weights

NONE: frozenset[str] = frozenset()


@pytest.mark.parametrize(("capability", "pays"), [((7, 5), False), ((8, 0), True),
                                                  ((9, 0), True), (None, False)])
def test_on_a_gpu_the_compute_capability_decides(capability: tuple[int, int] | None,
                                                 pays: bool) -> None:
    assert bf16_autocast_pays("cuda", frozenset({"amx_bf16"}), capability) is pays


@pytest.mark.parametrize(("flags", "pays"), [
    (frozenset({"avx512f", "amx_tile", "amx_bf16", "avx512_bf16"}), True),  # AMX
    (frozenset({"avx512f", "avx512_bf16"}), True),  # AVX-512 BF16 only: measured faster
    (frozenset({"avx512f", "avx2"}), False),  # emulated bf16
    (NONE, False),  # flags unknown (not Linux)
])
def test_on_a_cpu_the_bf16_flags_decide(flags: frozenset[str], pays: bool) -> None:
    assert bf16_autocast_pays("cpu", flags, (9, 0)) is pays


def test_frozen_linear_weights_go_bf16_and_the_rest_stays_fp32() -> None:
    """The base layers' and the (untied) head's weights are bf16; LoRA, embeddings and norms
    fp32; the embedding table keeps its fp32 values."""
    model_cfg, hw, lora = tiny_configs()
    model, _ = load_base_model(model_cfg, hw)
    peft = wrap_lora(model, lora, hw)  # fp32 hardware: nothing stored in bf16
    assert {p.dtype for p in peft.parameters()} == {torch.float32}
    embedding = peft.get_input_embeddings().weight
    assert peft.get_output_embeddings().weight is embedding  # tied
    table = embedding.detach().clone()

    cast = store_frozen_weights(peft, torch.bfloat16)

    head = peft.get_output_embeddings().weight
    assert cast == 2 * 7 + 1  # q k v o gate up down in each of 2 layers, and the head
    assert head.dtype == torch.bfloat16 and not head.requires_grad
    assert torch.equal(head.float(), table.bfloat16().float())
    assert torch.equal(peft.get_input_embeddings().weight, table)
    for name, p in peft.named_parameters():
        if p.requires_grad:
            assert "lora_" in name and p.dtype == torch.float32, name
        elif name.endswith("base_layer.weight"):
            assert p.dtype == torch.bfloat16, name
        elif "norm" in name or "embed_tokens" in name:
            assert p.dtype == torch.float32, name
    assert store_frozen_weights(peft, torch.bfloat16) == 0  # idempotent
