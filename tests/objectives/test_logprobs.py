"""Chunked vocabulary projection: token log-probs and their gradients equal those of the full
(rows, vocabulary) logits, for the fused path (frozen bias-free head) and the checkpointed
one (any other head), with a temperature per row."""

from __future__ import annotations

import pytest
import torch

from polylora.objectives.logprobs import chunked_token_logprobs, gather_logprobs


def _case(trainable_head: bool) -> tuple[torch.Tensor, torch.nn.Linear, torch.Tensor,
                                         torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(11, 16, generator=g, requires_grad=True)
    head = torch.nn.Linear(16, 97, bias=trainable_head)
    with torch.no_grad():
        head.weight.copy_(torch.randn(97, 16, generator=g))
    head.requires_grad_(trainable_head)
    targets = torch.randint(0, 97, (11,), generator=g)
    temperature = torch.rand(11, generator=g) + 0.5
    return hidden, head, targets, temperature


@pytest.mark.parametrize("trainable_head", [False, True])
@pytest.mark.parametrize("chunk", [1, 4, 512])
def test_chunked_logprobs_equal_full_logits(trainable_head: bool, chunk: int) -> None:
    hidden, head, targets, temperature = _case(trainable_head)
    weights = torch.linspace(-1.0, 2.0, 11)  # any per-token upstream gradient

    full = gather_logprobs(head(hidden) / temperature[:, None], targets)
    (weights * full).sum().backward()
    expected_grad = hidden.grad.clone()
    expected_head = head.weight.grad.clone() if trainable_head else None
    hidden.grad, head.weight.grad = None, None

    got = chunked_token_logprobs(hidden, head, targets, temperature, chunk=chunk)
    (weights * got).sum().backward()
    torch.testing.assert_close(got, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hidden.grad, expected_grad, atol=1e-5, rtol=1e-5)
    if trainable_head:
        torch.testing.assert_close(head.weight.grad, expected_head, atol=1e-5, rtol=1e-5)
    assert float(expected_grad.abs().sum()) > 0


def test_scalar_temperature_and_no_rows() -> None:
    hidden, head, targets, _ = _case(False)
    got = chunked_token_logprobs(hidden, head, targets, 0.7, chunk=3)
    expected = gather_logprobs(head(hidden), targets, 0.7)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    empty = chunked_token_logprobs(hidden[:0], head, targets[:0], 1.0)
    assert empty.shape == (0,)
