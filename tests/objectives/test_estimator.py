"""The estimator's pieces: the two token normalizers, the skipped and zero-graph terms, and the
base model (adapter disabled) that the KL term needs."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_configs
from objectives.test_polychromic import context, fixed_samples, lora_model

from polylora.errors import ConfigError
from polylora.model.loading import load_base_model
from polylora.objectives.estimator import Estimator, base_model
from polylora.objectives.sampling import PromptCache


def estimator(**changes: object) -> Estimator:
    settings: dict[str, object] = dict(
        temperature=1.0, max_new_tokens=4, pg_normalizer="constant", ce_weight=1.0,
        pg_weight=1.0, kl_weight=0.0, kl_estimator="k1", pad_id=0)
    return Estimator(**{**settings, **changes})  # type: ignore[arg-type]


def test_constant_and_sample_mean_normalizers() -> None:
    sums = torch.tensor([2.0, 6.0])
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]])
    # constant: Σ / (R · max_new_tokens), R = 4 samples in the whole step
    assert float(estimator().reduce(sums, mask, 4)) == pytest.approx(8.0 / 16)
    # sample_mean: Σ_i (sum_i / length_i) / R
    mean = estimator(pg_normalizer="sample_mean").reduce(sums, mask, 4)
    assert float(mean) == pytest.approx((2.0 / 2 + 6.0 / 3) / 4)


def test_no_signal_skips_the_pass_and_zero_graph_keeps_a_graph() -> None:
    model, tok = lora_model()
    est = estimator(pad_id=tok.pad_token_id)
    prompts = PromptCache().lookup(context(tok), [0, 1])
    ids, _ = fixed_samples(tok, 2)
    skipped = est.pg_terms(model, prompts, ids, [[0.0] * 3, [0.0] * 3])
    assert skipped.skipped and float(skipped.pg_loss) == 0.0
    assert not skipped.pg_loss.requires_grad  # no forward ran
    zero = est.zero_graph_terms(model, prompts, ids)
    assert float(zero.pg_loss.detach()) == 0.0 and zero.pg_loss.requires_grad
    with_signal = est.pg_terms(model, prompts, ids, [[1.0, 0.0, -1.0], [0.5, 0.0, 0.0]])
    assert not with_signal.skipped and with_signal.pg_loss.requires_grad
    assert with_signal.kl is None and with_signal.mean_logprob < 0


def test_the_base_model_needs_an_adapter() -> None:
    model, _ = lora_model()
    with base_model(model):  # the PEFT model's adapter is off inside
        pass
    plain, _ = load_base_model(*tiny_configs()[:2])
    with pytest.raises(ConfigError, match="kl_weight > 0 needs a LoRA adapter"):
        base_model(plain)
