"""The score-function estimator of the sampled-set core: per-sample advantages → the policy-
gradient loss, the KL surrogate to the base model, and the token normalizer, computed from
the samples' log-probs under the distribution sampled from (softmax(logits / T), dropout off).

These are the separate passes (one teacher-forced pass over the samples, apart from CE);
:mod:`polylora.objectives.micro_batching` runs the same terms in the single pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeGuard

import torch

from polylora.errors import ConfigError
from polylora.model.generation import eval_mode
from polylora.objectives.base import Backward
from polylora.objectives.logprobs import kl_surrogate, pack, prefix_token_logprobs


@dataclass
class PGTerms:
    """The score-function loss (unscaled micro-batch value), optional KL, diagnostics. Parts
    already backpropagated by the estimator enter detached (value only)."""

    pg_loss: torch.Tensor
    kl_loss: torch.Tensor | None = None
    kl: float | None = None  # the KL estimate (nats per sample), for logging
    mean_logprob: float = 0.0
    skipped: bool = False


class _AdapterModel(Protocol):
    """A PEFT model: the base model computes inside ``disable_adapter()``."""

    def disable_adapter(self) -> AbstractContextManager[Any]: ...


def _has_adapter(model: object) -> TypeGuard[_AdapterModel]:
    return hasattr(model, "disable_adapter")


def base_model(model: torch.nn.Module) -> AbstractContextManager[Any]:
    """Context in which ``model`` computes the frozen base model (adapter disabled)."""
    base = getattr(model, "module", model)
    if not _has_adapter(base):
        raise ConfigError("objective.kl_weight > 0 needs a LoRA adapter (lora.enabled)")
    return base.disable_adapter()


@dataclass(frozen=True)
class Estimator:
    """The settings a step's loss ``ce_weight·CE + λ·PG + β·KL`` is computed under."""

    temperature: float
    max_new_tokens: int
    pg_normalizer: str
    ce_weight: float
    pg_weight: float
    kl_weight: float
    kl_estimator: str
    pad_id: int

    def reduce(self, per_sample_sums: torch.Tensor, mask: torch.Tensor,
               total: int) -> torch.Tensor:
        """Σ over a sample's tokens → one number: / (R · max_new_tokens) or per-sample mean,
        R = ``total`` samples of the step (these rows may be one micro-batch of them)."""
        if self.pg_normalizer == "constant":
            return per_sample_sums.sum() / (total * self.max_new_tokens)
        return (per_sample_sums / mask.sum(1).clamp(min=1)).sum() / total

    def sample_logprobs(
        self,
        model: torch.nn.Module,
        prompt_ids: Sequence[Sequence[int]],
        sample_ids: Sequence[Sequence[Sequence[int]]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B·N, L) token log-probs under softmax(logits / T) and their mask, eval mode.

        Each prompt runs once with its KV cache shared by its N samples
        (:func:`prefix_token_logprobs`) unless the model gives no cache or is a DDP wrapper
        (two forwards before one backward); then one [prompt | sample] row per sample."""
        with eval_mode(model):
            if getattr(model, "module", model) is model:
                shared = prefix_token_logprobs(model, prompt_ids, sample_ids, self.pad_id,
                                               self.temperature)
                if shared is not None:
                    return shared
            packed = pack(prompt_ids, sample_ids, self.pad_id, next(model.parameters()).device)
            return packed.token_logprobs(model, self.temperature), packed.target_mask

    def pg_terms(
        self,
        model: torch.nn.Module,
        prompt_ids: Sequence[Sequence[int]],
        sample_ids: Sequence[Sequence[Sequence[int]]],
        advantages: Sequence[Sequence[float]],
        micro_batch: int | None = None,
        backward: Backward | None = None,
        loss_scale: float = 1.0,
        keep_last: bool = False,
    ) -> PGTerms:
        """The PG loss (and KL) of the samples WITH grad, dropout off (as when sampling).

        Skipped (exactly 0, no forward) when every advantage is 0 and β = 0. With
        ``backward``, the pass runs ``micro_batch`` prompts at a time and backpropagates
        ``loss_scale · (λ·PG + β·KL)`` of each micro-batch at once (all but the last when
        ``keep_last``), so only one micro-batch's graph is alive; those parts come back
        detached. Without it, one pass over all prompts (one graph).
        """
        device = next(model.parameters()).device
        flat = [float(a) for aa in advantages for a in aa]
        if not flat or (self.kl_weight == 0 and all(a == 0.0 for a in flat)):
            zero = torch.zeros((), device=device)
            return PGTerms(pg_loss=zero, skipped=True)
        size = max(len(prompt_ids), 1)
        if backward is not None and micro_batch is not None:
            size = micro_batch
        starts = list(range(0, len(prompt_ids), size))
        pg_parts: list[torch.Tensor] = []
        kl_parts: list[torch.Tensor] = []
        logprob_sum = kl_sum = 0.0
        row = 0
        for k, b0 in enumerate(starts):
            prompts, samples = prompt_ids[b0 : b0 + size], sample_ids[b0 : b0 + size]
            logp, mask = self.sample_logprobs(model, prompts, samples)
            adv = torch.tensor(flat[row : row + len(logp)], device=device, dtype=logp.dtype)
            row += len(logp)
            logprob_sum += float((logp.detach().sum(1) / mask.sum(1).clamp(min=1)).sum())
            pg = self.reduce(-adv * logp.sum(1), mask, len(flat))
            kl = None
            if self.kl_weight > 0:
                with torch.no_grad(), base_model(model):
                    ref, _ = self.sample_logprobs(model, prompts, samples)
                surrogate, estimate = kl_surrogate(logp, ref, mask, self.kl_estimator)
                kl = self.reduce(surrogate, mask, len(flat))
                kl_sum += float(estimate.sum())
            if backward is not None and not (keep_last and k == len(starts) - 1):
                part = self.pg_weight * pg + (self.kl_weight * kl if kl is not None else 0.0)
                backward(part * loss_scale)
                pg, kl = pg.detach(), (kl.detach() if kl is not None else None)
            pg_parts.append(pg)
            if kl is not None:
                kl_parts.append(kl)
        terms = PGTerms(pg_loss=torch.stack(pg_parts).sum(),
                        mean_logprob=logprob_sum / len(flat))
        if kl_parts:
            terms.kl_loss = torch.stack(kl_parts).sum()
            terms.kl = kl_sum / len(flat)
        return terms

    def zero_graph_terms(self, model: torch.nn.Module, prompt_ids: list[list[int]],
                         sample_ids: list[list[list[int]]]) -> PGTerms:
        """Pure RL with no signal: a 0-valued loss that still has a graph (zero gradient)."""
        device = next(model.parameters()).device
        packed = pack(prompt_ids[:1], sample_ids[:1], self.pad_id, device)
        with eval_mode(model):
            logp = packed.token_logprobs(model, self.temperature)
        return PGTerms(pg_loss=logp.sum() * 0.0, skipped=True)
