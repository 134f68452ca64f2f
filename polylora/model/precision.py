"""Where bf16 autocast pays, and the frozen weights stored in bf16 once for it.

Autocast caches its bf16 casts of trainable leaf tensors only, so with fp32 frozen base
weights every matmul re-casts its weight (forward, backward and each sampled token). Storing
the frozen matmul weights in bf16 once at setup removes those casts; LoRA parameters, their
gradients and the optimizer state stay fp32.
"""

from __future__ import annotations

import torch
from torch import nn

#: CPU flags of native bf16 matmuls: AVX-512 BF16 dot products, AMX tiles.
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


def bf16_autocast_pays(
    device_kind: str, cpu_flags: frozenset[str], compute_capability: tuple[int, int] | None
) -> bool:
    """Whether ``hardware.autocast=auto`` computes in bf16: on a GPU of compute capability
    >= 8 (Ampere on), on a CPU with AMX or AVX-512 BF16 (measured faster than fp32 with the
    frozen weights stored in bf16, docs/benchmarks.md), and nowhere else (emulated bf16)."""
    if device_kind == "cuda":
        return compute_capability is not None and compute_capability[0] >= 8
    return bool(cpu_flags & CPU_BF16_FLAGS)


def store_frozen_weights(model: nn.Module, dtype: torch.dtype) -> int:
    """Store the weights of the frozen ``nn.Linear`` layers outside the LoRA adapters in
    ``dtype``; returns how many were cast. An output head tied to the input embeddings gets
    its own frozen copy: the embeddings, norms and residual stream stay fp32."""
    cast = 0
    for name, module in model.named_modules():
        if type(module) is not nn.Linear or ".lora_" in f".{name}":
            continue
        weight = module.weight
        if weight.requires_grad or weight.dtype == dtype or not weight.is_floating_point():
            continue
        # A new Parameter (not an in-place .data swap): a tied head stops sharing with the
        # fp32 embedding table instead of casting it.
        module.weight = nn.Parameter(weight.detach().to(dtype), requires_grad=False)
        if module.bias is not None and not module.bias.requires_grad:
            module.bias = nn.Parameter(module.bias.detach().to(dtype), requires_grad=False)
        cast += 1
    return cast
