"""Static merges: PEFT weighted merges reproduce what they should and write loadable
adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from helpers import PROMPT
from peft import PeftModel

from polylora.adapters.merging import MERGE_INFO_FILE, merge_adapters
from polylora.adapters.routing import Route, RoutedAdapters
from polylora.adapters.sources import load_sources, resolve_sources
from polylora.model import loading as models


def _logits(cfg, adapter: Path | None, prompt: str = PROMPT) -> torch.Tensor:
    base, tok = models.load_base_model(cfg.model, cfg.hardware)
    model = base if adapter is None else PeftModel.from_pretrained(base, adapter)
    model.eval()
    with torch.no_grad():
        return model(**tok(prompt, return_tensors="pt")).logits


def test_linear_merge_with_weights_1_0_reproduces_the_first_adapter(
    tiny_adapters, tmp_path
) -> None:
    cfg, ad = tiny_adapters
    sources = resolve_sources([str(ad["a"]), str(ad["b"])])
    out = merge_adapters(sources, cfg.model, cfg.hardware, "linear", [1.0, 0.0], tmp_path / "m")
    assert (out / "adapter_config.json").is_file()
    assert (out / "adapter_model.safetensors").is_file()
    info = json.loads((out / MERGE_INFO_FILE).read_text())
    assert info["method"] == "linear" and info["weights"] == [1.0, 0.0]

    merged, first, second = _logits(cfg, out), _logits(cfg, ad["a"]), _logits(cfg, ad["b"])
    torch.testing.assert_close(merged, first)
    assert not torch.allclose(first, second, atol=1e-3)  # the adapters really differ

    half = merge_adapters(sources, cfg.model, cfg.hardware, "linear", [0.5, 0.5], tmp_path / "half")
    mixed = _logits(cfg, half)
    assert not torch.allclose(mixed, first, atol=1e-3)
    assert not torch.allclose(mixed, second, atol=1e-3)


def test_cat_merge_equals_the_routed_weighted_sum(tiny_adapters, tmp_path) -> None:
    """PEFT's exact ``cat`` merge and the sparse router's on-the-fly mix compute the same
    ``Σ wᵢ ΔWᵢ`` (also across different ranks)."""
    cfg, ad = tiny_adapters
    refs = [str(ad["a"]), str(ad["wide"])]
    sources = resolve_sources(refs)
    out = merge_adapters(sources, cfg.model, cfg.hardware, "cat", [0.7, 0.3], tmp_path / "cat")
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 12  # 4 + 8

    base, tok = models.load_base_model(cfg.model, cfg.hardware)
    routed = RoutedAdapters(*load_sources(base, sources))
    routed.apply(Route(indices=(0, 1), weights=(0.7, 0.3)))
    with torch.no_grad():
        on_the_fly = routed.module(**tok(PROMPT, return_tensors="pt")).logits
    torch.testing.assert_close(on_the_fly, _logits(cfg, out))


@pytest.mark.parametrize("method", ["ties", "dare_linear", "dare_ties"])
def test_pruning_merges_write_a_loadable_adapter(tiny_adapters, tmp_path, method: str) -> None:
    cfg, ad = tiny_adapters
    sources = resolve_sources([str(ad["a"]), str(ad["b"])])
    out = merge_adapters(
        sources, cfg.model, cfg.hardware, method, [0.5, 0.5], tmp_path / method, density=0.5
    )
    logits = _logits(cfg, out)
    assert torch.isfinite(logits).all()
    assert not torch.allclose(logits, _logits(cfg, None), atol=1e-4)  # the merge did something
