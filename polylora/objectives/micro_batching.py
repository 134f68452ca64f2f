"""A step's teacher-forced passes within a memory budget: the single pass (CE rows with LoRA
dropout, sample rows without, :mod:`polylora.objectives.single_pass`) run whole or a few
prompts at a time, how many prompts fit ``memory_budget_mb``, and CE in row micro-batches.

Every micro-batch but the last is backpropagated through the Trainer's backward as soon as
it is computed (only one micro-batch's graph is alive); the loss value and the gradients are
those of the whole pass (CE's dropout masks are drawn per micro-batch: other draws, same
distribution).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from polylora.data.formatting import IGNORE_INDEX
from polylora.model.lora_dropout import dropout_active
from polylora.objectives.base import Backward
from polylora.objectives.ce import cross_entropy_loss, response_token_nll_sum
from polylora.objectives.estimator import Estimator, PGTerms, base_model
from polylora.objectives.logprobs import kl_surrogate
from polylora.objectives.single_pass import (
    ScoredRows,
    activation_bytes_per_position,
    ce_rows,
    row_logprobs,
)


@dataclass(frozen=True)
class MemoryPlan:
    """How a step's pass is cut: ``micro_batch`` prompts per pass when set, else as many as
    fit ``memory_budget_mb`` (None: never split); ``n_generations`` rows per prompt."""

    micro_batch: int | None
    memory_budget_mb: float | None
    n_generations: int

    def prompts_within_budget(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor],
        prompts: list[list[int]], sample_ids: list[list[list[int]]], with_ce: bool,
        ce_drop: bool,
    ) -> int:
        """Prompts per pass: all of them unless the estimated autograd memory of the pass
        (token positions × :func:`activation_bytes_per_position`) exceeds
        ``memory_budget_mb``; then as many as fit (at least one)."""
        if self.memory_budget_mb is None or not prompts:
            return len(prompts)
        prompt_width = max(len(p) for p in prompts)
        sample_width = max((len(s) for ss in sample_ids for s in ss), default=0)
        ce_width = int(batch["attention_mask"].sum(1).max()) if with_ce else 0
        prefixes = 2 if with_ce and ce_drop else 1  # CE prompts apart when dropout is on
        rows = self.n_generations + (1 if with_ce else 0)
        per_prompt = prefixes * prompt_width + rows * max(sample_width, ce_width - prompt_width)
        need = per_prompt * activation_bytes_per_position(model) / 2**20
        return max(1, min(len(prompts), int(self.memory_budget_mb // max(need, 1e-9))))


def single_pass_terms(
    estimator: Estimator, plan: MemoryPlan, model: torch.nn.Module,
    batch: dict[str, torch.Tensor], prompts: list[list[int]],
    sample_ids: list[list[list[int]]], advantages: Sequence[Sequence[float]],
    num_items_in_batch: int | torch.Tensor | None, ga: int, backward: Backward | None,
) -> tuple[PGTerms, torch.Tensor | None]:
    """The CE rows (with LoRA dropout) and the sample rows (without) in ONE forward:
    (PG/KL terms, CE) with the values and gradients of the separate passes. With the
    Trainer's ``backward``, ``plan``'s prompts per pass, each but the last backpropagated
    here."""
    est = estimator
    device = next(model.parameters()).device
    flat = [float(a) for aa in advantages for a in aa]
    with_pg = bool(flat) and not (est.kl_weight == 0 and all(a == 0 for a in flat))
    with_ce = est.ce_weight > 0
    denominator: int | torch.Tensor = 1
    if with_ce:
        denominator = (num_items_in_batch if num_items_in_batch is not None else
                       (batch["labels"][:, 1:] != IGNORE_INDEX).sum().clamp(min=1) * ga)
    ce_drop = dropout_active(model)
    size = len(prompts)
    if backward is not None:
        size = plan.micro_batch or plan.prompts_within_budget(
            model, batch, prompts, sample_ids, with_ce, ce_drop)
    starts = list(range(0, len(prompts), max(size, 1)))
    pg_parts: list[torch.Tensor] = []
    kl_parts: list[torch.Tensor] = []
    ce_parts: list[torch.Tensor] = []
    logprob_sum = kl_sum = 0.0
    row = 0
    for k, b0 in enumerate(starts):
        rows = ScoredRows()
        part_ce = ([] if not with_ce else ce_rows(
            rows, {key: batch[key][b0 : b0 + size]
                   for key in ("input_ids", "attention_mask", "labels")}, ce_drop))
        part_samples: list[int] = []
        for prompt, samples in zip(prompts[b0 : b0 + size], sample_ids[b0 : b0 + size],
                                   strict=True):
            owner = rows.prefix(prompt, False)
            for s in samples if with_pg else ():
                part_samples.append(rows.add(owner, s[:-1], s, est.temperature))
        logp, mask = row_logprobs(model, rows, est.pad_id)
        loss = torch.zeros((), device=device)
        if part_ce:
            ce = -(logp[part_ce] * mask[part_ce]).sum() / denominator
            loss = loss + est.ce_weight * ce
            ce_parts.append(ce)
        if part_samples:
            lp, m = logp[part_samples], mask[part_samples]
            adv = torch.tensor(flat[row : row + len(lp)], device=device, dtype=lp.dtype)
            row += len(lp)
            logprob_sum += float((lp.detach().sum(1) / m.sum(1).clamp(min=1)).sum())
            pg = est.reduce(-adv * lp.sum(1), m, len(flat))
            loss = loss + est.pg_weight * pg / ga
            pg_parts.append(pg)
            if est.kl_weight > 0:
                ref_rows = ScoredRows()
                for index in part_samples:
                    ref_rows.add(ref_rows.prefix(rows.prefixes[rows.owner[index]], False),
                                 rows.fed[index], rows.targets[index], est.temperature)
                with torch.no_grad(), base_model(model):
                    ref, _ = row_logprobs(model, ref_rows, est.pad_id)
                surrogate, estimate = kl_surrogate(lp, ref, m, est.kl_estimator)
                kl = est.reduce(surrogate, m, len(flat))
                kl_sum += float(estimate.sum())
                loss = loss + est.kl_weight * kl / ga
                kl_parts.append(kl)
        if backward is not None and k < len(starts) - 1 and loss.requires_grad:
            backward(loss)
            for parts in (pg_parts, kl_parts, ce_parts):
                if parts:
                    parts[-1] = parts[-1].detach()
    zero = torch.zeros((), device=device)
    terms = PGTerms(pg_loss=torch.stack(pg_parts).sum() if pg_parts else zero,
                    mean_logprob=logprob_sum / max(len(flat), 1), skipped=not with_pg)
    if kl_parts:
        terms.kl_loss = torch.stack(kl_parts).sum()
        terms.kl = kl_sum / len(flat)
    return terms, (torch.stack(ce_parts).sum() if ce_parts else None)


def micro_batched_ce(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                     num_items_in_batch: int | torch.Tensor | None, ga: int,
                     backward: Backward | None, micro_batch: int | None) -> torch.Tensor:
    """:func:`cross_entropy_loss` of the batch; with ``backward``, ``micro_batch`` rows at a
    time (each cut to its longest row), all but the last backpropagated here. The value is
    the same token mean: each part is divided by the whole batch's token count."""
    rows = batch["input_ids"].shape[0]
    if backward is None or micro_batch is None or rows <= micro_batch:
        return cross_entropy_loss(model, batch, num_items_in_batch, ga)
    labels = batch["labels"]
    denominator = (num_items_in_batch if num_items_in_batch is not None
                   else (labels[:, 1:] != IGNORE_INDEX).sum().clamp(min=1) * ga)
    parts = []
    for r0 in range(0, rows, micro_batch):
        mask = batch["attention_mask"][r0 : r0 + micro_batch]
        width = int(mask.sum(1).max())  # right-padded: later columns are all padding
        if bool(mask[:, width:].any()):
            width = mask.shape[1]
        sub = {key: batch[key][r0 : r0 + micro_batch, :width]
               for key in ("input_ids", "attention_mask", "labels")}
        nll, _ = response_token_nll_sum(model, sub)
        part = nll / denominator
        if r0 + micro_batch < rows:
            backward(part)
            part = part.detach()
        parts.append(part)
    return torch.stack(parts).sum()
