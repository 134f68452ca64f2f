"""Model loading: the tiny model in code, LoRA wrapping, adapter errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import tiny_configs
from omegaconf import OmegaConf

from polylora.errors import PolyloraError
from polylora.model.loading import (
    build_tiny_tokenizer,
    count_parameters,
    load_adapter,
    load_base_model,
    wrap_lora,
)
from polylora.record.provenance import resolved_precision

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


def test_autocast_setting_resolves_per_device_and_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from polylora.model import loading as models

    def hw(**kw: object) -> object:
        return OmegaConf.create({"device": "cpu", "precision": "fp32", **kw})

    assert models.autocast_dtype(hw(autocast="off")) is None
    assert models.autocast_dtype(hw()) is None  # configs without the key: fp32
    assert models.autocast_dtype(hw(autocast="bf16")) == torch.bfloat16
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: False)
    assert models.autocast_dtype(hw(autocast="auto")) is None
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: True)
    assert models.autocast_dtype(hw(autocast="auto")) == torch.bfloat16
    assert models.autocast_dtype(hw(autocast="bf16", precision="bf16")) is None  # bf16 weights
    assert resolved_precision(hw(autocast="auto")) == "fp32+autocast-bf16"
    assert resolved_precision(hw(autocast="off")) == "fp32"
    assert resolved_precision(hw(precision="bf16")) == "bf16"


@pytest.mark.parametrize(("capability", "expected"), [((7, 5), None), ((8, 0), torch.bfloat16),
                                                      ((9, 0), torch.bfloat16)])
def test_auto_picks_bf16_on_gpus_of_compute_capability_8_and_up(
    monkeypatch: pytest.MonkeyPatch, capability: tuple[int, int], expected: torch.dtype | None
) -> None:
    from polylora.model import loading as models

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: True)  # not what decides on GPU
    hw = OmegaConf.create({"device": "cuda", "precision": "fp32", "autocast": "auto"})
    assert models.autocast_dtype(hw) == expected
    assert resolved_precision(hw) == ("fp32" if expected is None else "fp32+autocast-bf16")


def test_default_hardware_is_auto_and_cpu_fp32_is_exact(compose_cfg, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """hardware=cpu (the default) resolves auto on this CPU; hardware=cpu_fp32 never autocasts;
    the resolved precision is an MLflow param."""
    from polylora.model import loading as models
    from polylora.record.tracking import RESOLVED_PRECISION, config_params
    from polylora.train.trainer import training_arguments

    cfg = compose_cfg(["model=tiny_random", "hardware=cpu"])
    assert cfg.hardware.autocast == "auto"
    for native in (True, False):
        monkeypatch.setattr(models, "cpu_has_native_bf16", lambda n=native: n)
        assert training_arguments(cfg, tmp_path, has_eval=False).bf16 is native
        assert config_params(cfg)[RESOLVED_PRECISION] == ("fp32+autocast-bf16" if native
                                                          else "fp32")
    monkeypatch.setattr(models, "cpu_has_native_bf16", lambda: True)
    exact = compose_cfg(["model=tiny_random", "hardware=cpu_fp32"])
    assert not training_arguments(exact, tmp_path, has_eval=False).bf16
    assert config_params(exact)[RESOLVED_PRECISION] == "fp32"


def test_bf16_autocast_loss_and_gradients_agree_with_fp32() -> None:
    """The stated tolerance (README, docs/benchmarks.md): under CPU bf16 autocast the CE loss
    is within 2 % of fp32 and each LoRA gradient within 10 % (relative L2) with cosine > 0.99."""
    from polylora.objectives.ce import cross_entropy_loss

    model_cfg, hw, lora = tiny_configs()
    model, tok = load_base_model(model_cfg, hw)
    model = wrap_lora(model, lora, hw)
    with torch.no_grad():  # LoRA B starts at zero: give the adapter a non-trivial state
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, len(tok), (4, 24), generator=g)
    labels = ids.clone()
    labels[:, :12] = -100
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

    def loss_and_grads(dtype: torch.dtype | None) -> tuple[float, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        ctx = torch.autocast("cpu", dtype=dtype) if dtype else torch.autocast("cpu", enabled=False)
        with ctx:
            loss = cross_entropy_loss(model, batch, None, 1)
        loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()
                 if p.requires_grad and p.grad is not None}
        return float(loss.detach()), grads

    loss32, grads32 = loss_and_grads(None)
    loss16, grads16 = loss_and_grads(torch.bfloat16)
    assert loss16 != loss32  # autocast did run in bf16
    assert loss16 == pytest.approx(loss32, rel=0.02)
    checked = [n for n in grads32 if "lora_" in n][:6]
    assert len(checked) == 6
    for name in checked:
        a, b = grads32[name].flatten(), grads16[name].flatten()
        assert torch.linalg.norm(a - b) / torch.linalg.norm(a) < 0.10, name
        assert torch.nn.functional.cosine_similarity(a, b, dim=0) > 0.99, name


def test_cpu_bf16_hardware_turns_on_trainer_mixed_precision(compose_cfg, tmp_path: Path) -> None:
    from polylora.train.trainer import training_arguments

    cfg = compose_cfg(["model=tiny_random", "hardware=cpu_bf16", "hardware.autocast=bf16"])
    assert training_arguments(cfg, tmp_path, has_eval=False).bf16
    cfg = compose_cfg(["model=tiny_random"])  # the test fixture pins fp32
    assert not training_arguments(cfg, tmp_path, has_eval=False).bf16


def test_bf16_autocast_stores_frozen_weights_in_bf16_and_a_step_trains_lora() -> None:
    """Under bf16 autocast wrap_lora stores the frozen base weights in bf16 (LoRA stays fp32),
    and an optimizer step gives a finite loss and moves the LoRA weights."""
    from polylora.objectives.ce import cross_entropy_loss

    model_cfg, hw, lora = tiny_configs()
    bf16 = OmegaConf.merge(hw, {"autocast": "bf16"})
    model, tok = load_base_model(model_cfg, bf16)
    model = wrap_lora(model, lora, bf16)
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert frozen == {torch.bfloat16, torch.float32}  # linears bf16; embeddings, norms fp32
    assert trainable and {p.dtype for p in trainable} == {torch.float32}
    with torch.no_grad():  # LoRA B starts at zero: let A get gradients too
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05, generator=torch.Generator().manual_seed(len(name)))
    before = [p.detach().clone() for p in trainable]
    ids = torch.randint(5, len(tok), (4, 16), generator=torch.Generator().manual_seed(0))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = cross_entropy_loss(model, batch, None, 1)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in trainable)
    assert all(not torch.equal(b, p) for b, p in zip(before, trainable, strict=True))
    assert {s["exp_avg"].dtype for s in optimizer.state.values()} == {torch.float32}

