"""The passes within a memory budget: how many prompts fit the budget, and CE computed in row
micro-batches (each but the last backpropagated at once) with the whole batch's value and
gradients."""

from __future__ import annotations

import torch
from objectives.test_polychromic import context, fixed_samples, lora_model, make_batch

from polylora.objectives.ce import cross_entropy_loss
from polylora.objectives.micro_batching import MemoryPlan, micro_batched_ce
from polylora.objectives.sampling import PromptCache


def test_prompts_within_budget() -> None:
    model, tok = lora_model()
    ctx = context(tok)
    batch = make_batch(ctx, (0, 1, 2))
    prompts = PromptCache().lookup(ctx, [0, 1, 2])
    samples, _ = fixed_samples(tok, 3)
    fit = [MemoryPlan(None, budget, 3).prompts_within_budget(
        model, batch, prompts, samples, True, False) for budget in (None, 1e6, 1e-9)]
    assert fit == [3, 3, 1]


def test_micro_batched_ce_equals_the_whole_batch() -> None:
    model, tok = lora_model()
    model.eval()  # no dropout: the micro-batches would draw other masks
    batch = make_batch(context(tok), (0, 1, 2))
    whole = cross_entropy_loss(model, batch, None, 2)
    model.zero_grad(set_to_none=True)
    whole.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    calls: list[float] = []

    def backward(t: torch.Tensor) -> None:
        calls.append(float(t.detach()))
        t.backward()

    parts = micro_batched_ce(model, batch, None, 2, backward, micro_batch=2)
    parts.backward()
    assert len(calls) == 1  # rows 0-1 inside, row 2 returned
    torch.testing.assert_close(parts.detach(), whole.detach(), atol=1e-6, rtol=1e-5)
    for name, grad in expected.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad,
                                   atol=1e-6, rtol=1e-4)
    # without the Trainer's backward: the plain whole-batch CE
    assert micro_batched_ce(model, batch, None, 2, None, micro_batch=2).requires_grad
