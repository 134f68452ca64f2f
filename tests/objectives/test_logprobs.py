"""Token log-probs of sampled completions: the chunked vocabulary projection equals the full
logits (values and gradients, fused and checkpointed paths, a temperature per row); packing
aligns [prompt | sample] rows; the k1/k2 KL surrogates have the documented gradients."""

from __future__ import annotations

import pytest
import torch

from polylora.objectives.logprobs import (
    chunked_token_logprobs,
    gather_logprobs,
    kl_surrogate,
    pack,
)


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


def test_gather_logprobs_is_log_softmax_at_the_target_with_temperature() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 5, 13, generator=g, dtype=torch.float64)
    targets = torch.randint(0, 13, (3, 5), generator=g)
    got = gather_logprobs(logits, targets, temperature=0.5)
    expected = torch.log_softmax(logits.float() / 0.5, dim=-1).gather(
        -1, targets.unsqueeze(-1)).squeeze(-1)
    assert got.dtype == torch.float32 and got.shape == (3, 5)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)
    assert bool((got <= 0).all())


def test_pack_aligns_every_sample_at_one_column_in_prompt_major_order() -> None:
    packed = pack([[1, 2, 3], [4]], [[[5], [6, 7]], [[8, 9, 10], []]], pad_id=0,
                  device=torch.device("cpu"))
    assert packed.ids.tolist() == [
        [1, 2, 3, 5, 0, 0],
        [1, 2, 3, 6, 7, 0],
        [0, 0, 4, 8, 9, 10],
        [0, 0, 4, 0, 0, 0],
    ]
    assert packed.mask.tolist() == [
        [1, 1, 1, 1, 0, 0],
        [1, 1, 1, 1, 1, 0],
        [0, 0, 1, 1, 1, 1],
        [0, 0, 1, 0, 0, 0],
    ]
    assert packed.width_s == 3
    assert packed.targets.tolist() == [[5, 0, 0], [6, 7, 0], [8, 9, 10], [0, 0, 0]]
    assert packed.lengths.tolist() == [1.0, 2.0, 3.0, 0.0]


def test_pack_refuses_rows_without_a_prompt() -> None:
    with pytest.raises(ValueError, match="non-empty prompt"):
        pack([[]], [[[1, 2]]], pad_id=0, device=torch.device("cpu"))


def test_packed_token_logprobs_of_empty_samples_are_zero_without_a_forward() -> None:
    packed = pack([[1, 2]], [[[], []]], pad_id=0, device=torch.device("cpu"))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("no forward pass is needed for empty samples")

    net = torch.nn.Module()
    net.forward = refuse  # type: ignore[method-assign]
    out = packed.token_logprobs(net)
    assert out.shape == (2, 0) and packed.width_s == 0


def _kl_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.2, -3.0, -1.0]], requires_grad=True)
    ref = torch.tensor([[-1.5, -1.0, -0.5], [-0.2, -2.0, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # row 1's last column is padding
    return logp, ref, mask


def test_k1_estimate_sums_log_ratios_and_its_surrogate_weights_by_ratio_to_go() -> None:
    logp, ref, mask = _kl_case()
    loss, estimate = kl_surrogate(logp, ref, mask, "k1")
    # r = [[0.5, -1, 0], [0, -1, (masked)]]
    torch.testing.assert_close(estimate, torch.tensor([-0.5, -1.0]))
    assert not estimate.requires_grad
    loss.sum().backward()
    # d/d logp_t of Σ_t sg(Σ_{s≥t} r_s) · logp_t is the ratio-to-go (masked columns: 0)
    torch.testing.assert_close(logp.grad, torch.tensor([[-0.5, -1.0, 0.0], [-1.0, -1.0, 0.0]]))


def test_k2_is_half_the_squared_log_ratio_and_its_gradient_is_the_ratio() -> None:
    logp, ref, mask = _kl_case()
    loss, estimate = kl_surrogate(logp, ref, mask, "k2")
    torch.testing.assert_close(estimate, torch.tensor([0.5 * (0.25 + 1.0), 0.5 * 1.0]))
    torch.testing.assert_close(loss.detach(), estimate)
    loss.sum().backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[0.5, -1.0, 0.0], [0.0, -1.0, 0.0]]))


def test_unknown_kl_estimator_is_refused_by_name() -> None:
    logp, ref, mask = _kl_case()
    with pytest.raises(ValueError, match="'k3'"):
        kl_surrogate(logp, ref, mask, "k3")
