"""One teacher-forced pass per RL step: the CE rows (LoRA dropout on) and the sampled rows
(dropout off) in one forward give the loss and LoRA gradients of the two separate passes
(CE in training mode, the samples in eval mode), with dropout off and on (on: under one fixed
dropout mask, so both computations draw the same one)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from helpers import tiny_configs
from objectives.test_polychromic import context, fixed_samples, make_batch
from omegaconf import OmegaConf

from polylora.data.words import WordChecker
from polylora.errors import ConfigError
from polylora.model.loading import load_base_model, wrap_lora
from polylora.objectives.ce import cross_entropy_loss
from polylora.objectives.grpo import GRPOObjective
from polylora.objectives.logprobs import pack
from polylora.objectives.polychromic import PolychromicObjective
from polylora.objectives.single_pass import ScoredRows, ce_rows, row_logprobs

TINY, CPU, LORA = tiny_configs()
SAMPLES = ["the cat", "a dog", "the dog sat on the mat"]
# Stated tolerance: fp32, the two computations differ only in summation order.
ATOL, RTOL = 1e-6, 1e-4


def _model(dropout: float) -> tuple[torch.nn.Module, Any]:
    base, tok = load_base_model(TINY, CPU)
    torch.manual_seed(0)
    model = wrap_lora(base, OmegaConf.merge(LORA, {"dropout": dropout}), CPU)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    model.train()
    return model, tok


def _fixed_mask_dropout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dropout whose mask depends on the feature index only: a computation that drops the
    same rows draws the same mask, whatever its batch layout."""

    def dropout(x: torch.Tensor, p: float = 0.5, training: bool = True,
                inplace: bool = False) -> torch.Tensor:
        if not training or p == 0:
            return x
        g = torch.Generator().manual_seed(x.shape[-1])
        keep = (torch.rand(x.shape[-1], generator=g) >= p).to(x.dtype) / (1 - p)
        return x * keep

    monkeypatch.setattr(torch.nn.functional, "dropout", dropout)


def _grads(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _two_passes(obj: Any, model: torch.nn.Module, batch: dict[str, torch.Tensor],
                ga: int) -> torch.Tensor:
    """The step's loss as separate passes compute it: CE in training mode (dropout), the
    samples' log-probs in eval mode (no dropout), one [prompt | sample] row each."""
    tok = obj.context.tokenizer
    prompts = obj.prompt_ids(batch["example_index"].tolist())
    sample_ids, _ = fixed_samples(tok, len(prompts), SAMPLES)
    ce = cross_entropy_loss(model, batch, None, ga)
    packed = pack(prompts, sample_ids, tok.pad_token_id, torch.device("cpu"))
    model.eval()
    logp = packed.token_logprobs(model, obj.temperature)
    model.train()
    adv = torch.tensor([a for aa in obj.last_advantages for a in aa])
    pg = -(adv * logp.sum(1)).sum() / (len(adv) * obj.max_new_tokens)
    return obj.ce_weight * ce + obj.pg_weight * pg / ga


@pytest.mark.parametrize("dropout", [0.0, 0.3])
@pytest.mark.parametrize("ga", [1, 2])
def test_single_pass_equals_separate_ce_and_sample_passes(
    dropout: float, ga: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fixed_mask_dropout(monkeypatch)
    model, tok = _model(dropout)
    obj = PolychromicObjective(diversity_metric="distinct", quality="none", temperature=0.8,
                               diversity_weight=0.7)
    obj.bind(context(tok))
    obj.generate = lambda m, p: fixed_samples(tok, len(p), SAMPLES)  # type: ignore[method-assign]
    batch = make_batch(obj.context, (0, 1, 2))
    calls: list[torch.Tensor] = []
    # a whole-batch step backpropagates nothing itself
    out = obj.compute_loss(model, batch, None, ga, backward=calls.append)
    assert not calls
    single = _grads(model, out.loss)
    reference_loss = _two_passes(obj, model, batch, ga)
    reference = _grads(model, reference_loss)
    assert float(out.loss.detach()) == pytest.approx(float(reference_loss.detach()), rel=1e-5)
    assert any(float(g.abs().sum()) > 0 for g in single.values())
    for name in reference:
        torch.testing.assert_close(single[name], reference[name], atol=ATOL, rtol=RTOL)
    if dropout:  # the mask mattered: without dropout the CE rows give other gradients
        model.eval()
        undropped = _grads(model, cross_entropy_loss(model, batch, None, ga))
        model.train()
        dropped = _grads(model, cross_entropy_loss(model, batch, None, ga))
        assert any(not torch.allclose(undropped[n], dropped[n], atol=1e-4) for n in dropped)


def test_sample_rows_are_scored_without_dropout() -> None:
    """With real (random) dropout on, sample rows scored in the single pass get the eval-mode
    log-probs exactly, every call; CE rows do not (they are dropped)."""
    model, tok = _model(0.5)
    obj = GRPOObjective(n_generations=3, temperature=0.7)
    obj.bind(context(tok, WordChecker()))
    prompts = obj.prompt_ids([0, 1])
    sample_ids, _ = fixed_samples(tok, 2, SAMPLES)
    batch = make_batch(obj.context, (0, 1))
    rows = ScoredRows()
    ce = ce_rows(rows, batch, dropout=True)
    samples = [rows.add(rows.prefix(p, False), s[:-1], s, 0.7)
               for p, ss in zip(prompts, sample_ids, strict=True) for s in ss]
    model.eval()
    with torch.no_grad():
        expected = pack(prompts, sample_ids, tok.pad_token_id, torch.device("cpu"))\
            .token_logprobs(model, 0.7)
        ce_eval, _ = row_logprobs(model, rows, tok.pad_token_id)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            logp, _ = row_logprobs(model, rows, tok.pad_token_id)
            width = expected.shape[1]
            torch.testing.assert_close(logp[samples][:, :width], expected, atol=1e-5, rtol=1e-5)
            assert not torch.allclose(logp[ce], ce_eval[ce], atol=1e-4)


def test_ce_rows_give_the_cross_entropy_of_the_batch() -> None:
    """CE rows cut after the prompt score the same labelled tokens as the full-row CE."""
    model, tok = _model(0.0)
    obj = GRPOObjective(n_generations=3)
    obj.bind(context(tok, WordChecker()))
    batch = make_batch(obj.context, (0, 1, 3))
    rows = ScoredRows()
    ce_rows(rows, batch, dropout=False)
    with torch.no_grad():
        logp, mask = row_logprobs(model, rows, tok.pad_token_id)
        expected = cross_entropy_loss(model, batch, None, 1)
    assert int(mask.sum()) == int((batch["labels"][:, 1:] != -100).sum())
    torch.testing.assert_close(-logp.sum() / mask.sum(), expected, atol=1e-6, rtol=1e-5)


def test_kl_term_in_the_single_pass_equals_the_separate_pass() -> None:
    """β > 0: the base model's log-probs (adapter disabled) and the KL surrogate are those of
    the separate pass (the micro-batch test compares the rest)."""
    model, tok = _model(0.0)
    results = []
    for single in (True, False):
        obj = GRPOObjective(n_generations=3, kl_weight=0.3, temperature=0.8)
        obj.bind(context(tok, WordChecker()))
        obj.generate = lambda m, p: fixed_samples(tok, len(p), SAMPLES)  # type: ignore[method-assign]
        if not single:  # the separate passes, as for a model without a decoder/head split
            monkey = pytest.MonkeyPatch()
            monkey.setattr("polylora.objectives.sampled.supports_single_pass", lambda m: False)
        out = obj.compute_loss(model, make_batch(obj.context, (0, 1)), None, 1)
        if not single:
            monkey.undo()
        results.append((out.metrics, _grads(model, out.loss)))
    (m_a, g_a), (m_b, g_b) = results
    assert m_a["train/kl"] == pytest.approx(m_b["train/kl"], rel=1e-4, abs=1e-6)
    assert m_a["train/kl_loss"] == pytest.approx(m_b["train/kl_loss"], rel=1e-4, abs=1e-6)
    for name in g_a:
        torch.testing.assert_close(g_a[name], g_b[name], atol=ATOL, rtol=RTOL)


def test_a_step_splits_only_when_its_memory_estimate_exceeds_the_budget() -> None:
    """No budget (or a large one): one pass, nothing backpropagated inside. A budget smaller
    than one prompt's estimate: one prompt per pass, each but the last backpropagated inside;
    the gradients are the same."""
    model, tok = _model(0.0)
    results = []
    for budget in (None, 1e4, 1e-6):
        obj = PolychromicObjective(diversity_metric="distinct", quality="none",
                                   memory_budget_mb=budget)
        obj.bind(context(tok))
        obj.generate = lambda m, p: fixed_samples(tok, len(p), SAMPLES)  # type: ignore[method-assign]
        calls: list[float] = []
        model.zero_grad(set_to_none=True)
        out = obj.compute_loss(model, make_batch(obj.context, (0, 1, 2)), None, 1,
                               backward=lambda t, c=calls: (c.append(float(t.detach())),
                                                            t.backward()))
        out.loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()
                 if p.requires_grad}
        results.append((len(calls), grads))
    assert [calls for calls, _ in results] == [0, 0, 2]
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[2][1][name], grad, atol=ATOL, rtol=RTOL)


def test_memory_budget_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="memory_budget_mb"):
        PolychromicObjective(memory_budget_mb=0)
