"""Teacher-forced log-probs of sampled completions under the distribution they were drawn from,
and the KL estimators of the policy-gradient core.

The sampler draws token t from softmax(logits / T) (top-p off: the core refuses top-p < 1), so
the score-function term needs log softmax(logits / T) of the sampled tokens, not of the raw
logits. Rows are [prompt | sample]: prompts left-padded and samples right-padded so every
sample starts at the same column; position ids follow the attention mask as in ``generate``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


def gather_logprobs(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """log softmax(logits / T)[y] as ``logit[y] / T − logsumexp(logits / T)``: the same
    numbers without keeping a full-vocabulary ``log_softmax`` copy for the backward."""
    logits = logits.float()
    if temperature != 1.0:
        logits = logits / temperature
    picked = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


#: Token positions per chunk of the vocabulary projection: one chunk's full-vocabulary
#: logits (and their softmax) are the largest tensors of a step (512 × 49,152 fp32 ≈ 100 MB).
LOGIT_CHUNK = 512


class _ChunkedTokenLogprobs(torch.autograd.Function):
    """log softmax(h·Wᵀ · s)[y] for rows h, computed chunk by chunk (s = 1/T per row).

    Each row's log-prob depends on that row only, so its gradient is one vector per row,
    J = s · (onehot(y) − softmax) · W, computed in the forward chunk by chunk and kept
    ((rows, hidden), as small as the input): the backward is ``grad · J``. No full-vocabulary
    tensor outlives its chunk, and the projection runs twice per row (logits, J), as in a
    fused linear cross-entropy (Liger).
    """

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, hidden: torch.Tensor, weight: torch.Tensor,
        targets: torch.Tensor, scale: torch.Tensor, chunk: int,
    ) -> torch.Tensor:
        out = torch.empty(hidden.shape[0], device=hidden.device, dtype=torch.float32)
        need_grad = ctx.needs_input_grad[0]  # type: ignore[attr-defined]  # set by autograd
        jac = torch.empty_like(hidden) if need_grad else None
        for s in range(0, hidden.shape[0], chunk):
            e = min(s + chunk, hidden.shape[0])
            logits = (hidden[s:e] @ weight.t()).float() * scale[s:e, None]
            lse = torch.logsumexp(logits, dim=-1)
            y = targets[s:e, None]
            out[s:e] = logits.gather(-1, y).squeeze(-1) - lse
            if jac is not None:
                residual = logits.sub_(lse[:, None]).exp_().neg_()  # −softmax, in place
                residual.scatter_add_(-1, y, torch.ones_like(y, dtype=residual.dtype))
                residual.mul_(scale[s:e, None])
                jac[s:e] = residual.to(weight.dtype) @ weight
            del logits
        ctx.save_for_backward(jac if jac is not None else hidden.new_empty(0))
        return out

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, None, None, None, None]:
        (jac,) = ctx.saved_tensors  # type: ignore[attr-defined]  # set by save_for_backward
        return grad[:, None].to(jac.dtype) * jac, None, None, None, None


def chunked_token_logprobs(
    hidden: torch.Tensor,
    head: torch.nn.Module,
    targets: torch.Tensor,
    temperature: torch.Tensor | float = 1.0,
    chunk: int = LOGIT_CHUNK,
) -> torch.Tensor:
    """log softmax(head(h) / T)[y] for (rows, hidden) states, ``chunk`` rows at a time, so
    the (rows, vocabulary) logits are never materialised (``temperature``: one or per row).

    A frozen bias-free ``nn.Linear`` head (SmolLM2's, Llama's, Qwen's) takes the fused path
    (:class:`_ChunkedTokenLogprobs`); any other head (trainable, biased, adapted) is run per
    chunk under activation checkpointing: the same numbers, one more projection per row.
    """
    rows = hidden.shape[0]
    if isinstance(temperature, torch.Tensor):
        scale = 1.0 / temperature.to(device=hidden.device, dtype=torch.float32)
    else:
        scale = torch.full((rows,), 1.0 / float(temperature), device=hidden.device)
    if rows == 0:
        return hidden.new_zeros(0, dtype=torch.float32) + hidden.sum() * 0
    weight = getattr(head, "weight", None)
    plain = (type(head) is torch.nn.Linear and head.bias is None
             and isinstance(weight, torch.Tensor) and not weight.requires_grad)
    if plain:
        assert isinstance(weight, torch.Tensor)
        out = _ChunkedTokenLogprobs.apply(hidden, weight, targets, scale, chunk)
        assert isinstance(out, torch.Tensor)
        return out
    from torch.utils.checkpoint import checkpoint

    def part(h: torch.Tensor, y: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        logits = head(h).float() * s[:, None]
        return logits.gather(-1, y[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1)

    parts = []
    for s in range(0, rows, chunk):
        piece = checkpoint(part, hidden[s : s + chunk], targets[s : s + chunk],
                           scale[s : s + chunk], use_reentrant=False)
        assert isinstance(piece, torch.Tensor)
        parts.append(piece)
    return torch.cat(parts)


@dataclass
class Packed:
    """Teacher-forcing input for the samples: ids/mask of [prompt | sample] rows, the sample
    columns' targets and mask (``target_mask`` is 1 on each sample's own tokens)."""

    ids: torch.Tensor
    mask: torch.Tensor
    width_s: int
    targets: torch.Tensor
    target_mask: torch.Tensor

    def token_logprobs(self, net: torch.nn.Module, temperature: float = 1.0) -> torch.Tensor:
        """log softmax(logits / T)[y_t] at every sample column (0 where there is no token)."""
        if self.width_s == 0:
            return torch.zeros(self.targets.shape, device=self.ids.device)
        inputs = {"input_ids": self.ids, "attention_mask": self.mask,
                  "position_ids": (self.mask.cumsum(-1) - 1).clamp(min=0)}
        try:  # logits only where needed (SmolLM2's lm_head is ~20% of its FLOPs)
            out = net(**inputs, logits_to_keep=self.width_s + 1)
        except TypeError:  # a model without logits_to_keep
            out = net(**inputs)
        logits = out.logits[:, -(self.width_s + 1) : -1]
        return gather_logprobs(logits, self.targets, temperature) * self.target_mask

    @property
    def lengths(self) -> torch.Tensor:
        """Number of tokens of each sample."""
        return self.target_mask.sum(1)


def pack(
    prompt_ids: Sequence[Sequence[int]],
    sample_ids: Sequence[Sequence[Sequence[int]]],
    pad_id: int,
    device: torch.device,
) -> Packed:
    """[prompt + sample] rows in prompt-major order (prompt b's samples are rows b·N … b·N+N−1)."""
    rows = [(list(p), list(s)) for p, ss in zip(prompt_ids, sample_ids, strict=True) for s in ss]
    width_p = max(len(p) for p, _ in rows)
    width_s = max(len(s) for _, s in rows)
    if width_p == 0:
        raise ValueError("the policy-gradient term needs a non-empty prompt for every sample")
    ids = torch.full((len(rows), width_p + width_s), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for r, (p, s) in enumerate(rows):
        ids[r, width_p - len(p) : width_p + len(s)] = torch.tensor(p + s, dtype=torch.long)
        mask[r, width_p - len(p) : width_p + len(s)] = 1
    ids, mask = ids.to(device), mask.to(device)
    return Packed(ids=ids, mask=mask, width_s=width_s,
                  targets=ids[:, width_p:], target_mask=mask[:, width_p:].float())


def kl_surrogate(
    logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor, estimator: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (surrogate loss, KL estimate) for KL(π_θ ‖ π_ref) over on-policy samples.

    ``r_t = log π_θ(y_t) − log π_ref(y_t)`` (π_ref: the base model, no grad).

    - ``k1``: the estimate is Σ_t r_t (unbiased for the sequence KL). As a *loss* k1 has zero
      expected gradient, so it enters as a reward: surrogate Σ_t sg(Σ_{s≥t} r_s) · log π_θ(y_t),
      whose expected gradient is exactly ∇ KL(π_θ ‖ π_ref) of the sequence distribution.
    - ``k2``: surrogate = estimate = Σ_t ½ r_t²; its gradient Σ_t r_t ∇ log π_θ(y_t) is the
      per-token KL gradient (exact for one-token answers; ignores effects on later tokens).

    Schulman's k3 (exp(−r) + r − 1) is NOT offered: used as a loss its expected gradient is
    that of the reverse KL(π_ref ‖ π_θ) (see docs/objective.md).
    """
    r = (logp - ref_logp.detach()) * mask
    if estimator == "k1":
        to_go = r.detach().flip(1).cumsum(1).flip(1)  # Σ_{s≥t} r_s
        return (to_go * logp * mask).sum(1), r.detach().sum(1)
    if estimator == "k2":
        k2 = (0.5 * r * r).sum(1)
        return k2, k2.detach()
    raise ValueError(f"unknown KL estimator {estimator!r}; use k1 or k2")


def prefix_token_logprobs(
    net: torch.nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    sample_ids: Sequence[Sequence[Sequence[int]]],
    pad_id: int,
    temperature: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The same log-probs as :meth:`Packed.token_logprobs`, running each prompt ONCE.

    The B prompts (left-padded) go through the model with a KV cache, which is repeated for
    each prompt's N samples; the samples then run from it. Gradients flow through the cache
    into the prompt pass, so this equals teacher-forcing ``[prompt + sample]`` row by row, at
    B·P + B·N·L token positions instead of B·N·(P + L). Returns ``(logp, mask)`` of shape
    (B·N, L), prompt-major, or None when the model gives no cache (e.g. under gradient
    checkpointing) or takes no ``logits_to_keep``: then use :func:`pack`.
    """
    from polylora.data.formatting import left_pad

    n = len(sample_ids[0]) if sample_ids else 0
    if n == 0 or any(len(s) != n for s in sample_ids):
        return None
    device = next(net.parameters()).device
    p_ids, p_mask = (t.to(device) for t in left_pad(prompt_ids, pad_id))
    try:
        out = net(input_ids=p_ids, attention_mask=p_mask, use_cache=True, logits_to_keep=1,
                  position_ids=(p_mask.cumsum(-1) - 1).clamp(min=0))
    except TypeError:  # a model without logits_to_keep
        return None
    cache = getattr(out, "past_key_values", None)
    if cache is None or not hasattr(cache, "batch_repeat_interleave"):
        return None
    rows = [list(s) for ss in sample_ids for s in ss]
    width = max(len(r) for r in rows)
    s_ids = torch.full((len(rows), max(width, 1)), pad_id, dtype=torch.long)
    s_mask = torch.zeros_like(s_ids)
    for r, s in enumerate(rows):
        s_ids[r, : len(s)] = torch.tensor(s, dtype=torch.long)
        s_mask[r, : len(s)] = 1
    s_ids, s_mask = s_ids.to(device), s_mask.to(device)
    # The prompt pass's last position predicts each sample's token 0 (the log-normalizer is
    # computed once per prompt), the sample pass the rest; log-probs are gathered per part, so
    # no concatenated or repeated full-vocabulary copy is kept.
    head = out.logits[:, -1].float()
    if temperature != 1.0:
        head = head / temperature
    rows_of = torch.arange(len(rows), device=device) // n
    parts = [(head[rows_of, s_ids[:, 0]] - torch.logsumexp(head, dim=-1)[rows_of])[:, None]]
    if width > 1:
        cache.batch_repeat_interleave(n)
        start = p_mask.sum(1).repeat_interleave(n)[:, None]
        out2 = net(input_ids=s_ids[:, :-1], past_key_values=cache, use_cache=True,
                   attention_mask=torch.cat([p_mask.repeat_interleave(n, dim=0),
                                             s_mask[:, :-1]], dim=1),
                   position_ids=start + torch.arange(width - 1, device=device))
        parts.append(gather_logprobs(out2.logits, s_ids[:, 1:], temperature))
    mask = s_mask.float()
    return torch.cat(parts, dim=1) * mask, mask
