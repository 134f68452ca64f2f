"""The sampled-set policy-gradient core shared by the RL objectives (polychromic, grpo, passk).
(Over 400 lines: one estimator, from sampling to the loss; split, its invariants would scatter.)

On a generation step it samples N completions per training prompt (no grad, eval mode),
asks the subclass for per-sample advantages (the only thing a subclass does), scales them
(``advantage_norm``), and adds a score-function term computed by a teacher-forced forward of
the samples WITH grad, under exactly the sampling distribution (log softmax(logits / T), LoRA
dropout off as while sampling):

    loss = ce_weight · CE + λ · PG + β · KL
    PG   = − Σ_i A_i Σ_t log π(y_i,t | x, y_i,<t) / (R · max_new_tokens)     (constant)
         = − mean_i A_i · mean_t log π(y_i,t | …)                           (sample_mean)

R is the number of samples in the micro-batch. The constant normalizer (Dr. GRPO) keeps the
estimator unbiased for the gradient of E[Σ_i A_i] whatever the lengths; per-sample mean
weights a token of a short answer more (length bias). KL is to the base model (adapter
disabled), see :func:`polylora.objectives.logprobs.kl_surrogate`. The Trainer does the
accumulation, checkpointing and the last backward; when it hands the objective its
``backward`` (:attr:`Objective.backward_fn`), the PG pass and the CE pass run in micro-batches
of ``micro_batch`` prompts, each backpropagated at once, so only one micro-batch's autograd
graph is alive (the peak memory of a step); the loss value and gradients are those of the
single pass (CE's dropout masks are drawn per micro-batch: other draws, same distribution).
"""

from __future__ import annotations

import math
import time
from abc import abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeGuard

import numpy as np
import torch

from polylora.data.example import Example
from polylora.data.formatting import IGNORE_INDEX, render_prompt
from polylora.errors import ConfigError, Problems
from polylora.generation import SamplingParams, eval_mode, sample
from polylora.objectives.advantages import ADVANTAGE_NORMS, AdvantageNorm, normalize_advantages
from polylora.objectives.base import LossOutput, Objective, ObjectiveContext
from polylora.objectives.ce import cross_entropy_loss, response_token_nll_sum
from polylora.objectives.logprobs import kl_surrogate, pack, prefix_token_logprobs
from polylora.objectives.monitors import (
    MonitorWarning,
    NoSignalMonitor,
    TrainingMonitor,
    emit_warning,
)

MIN_GENERATIONS, MAX_GENERATIONS = 2, 8
PG_NORMALIZERS: tuple[str, ...] = ("constant", "sample_mean")
KL_ESTIMATORS: tuple[str, ...] = ("k1", "k2")


@dataclass
class SetScores:
    """What a scoring module returns for one step: per prompt, per sample raw advantages
    (before ``advantage_norm``) and rewards/qualities; per set a diversity (None: the core uses
    the fraction of distinct answers); extra scalars to log."""

    advantages: list[list[float]]
    qualities: list[list[float]]
    diversities: list[float] | None = None
    set_scores: list[float] | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class PGTerms:
    """The score-function loss (unscaled micro-batch value), optional KL, diagnostics. Parts
    already backpropagated by :meth:`SampledSetObjective.pg_terms` enter detached (value only)."""

    pg_loss: torch.Tensor
    kl_loss: torch.Tensor | None = None
    kl: float | None = None  # the KL estimate (nats per sample), for logging
    mean_logprob: float = 0.0
    skipped: bool = False


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class _AdapterModel(Protocol):
    """A PEFT model: the base model computes inside ``disable_adapter()``."""

    def disable_adapter(self) -> AbstractContextManager[Any]: ...


def _has_adapter(model: object) -> TypeGuard[_AdapterModel]:
    return hasattr(model, "disable_adapter")


def distinct_fraction(texts: Sequence[str]) -> float:
    """(#distinct answers − 1) / (N − 1): 0 when all alike, 1 when all differ."""
    if len(texts) < 2:
        return 0.0
    return (len({t.strip().lower() for t in texts}) - 1) / (len(texts) - 1)


class SampledSetObjective(Objective):
    """CE (weight ``ce_weight``) + λ · policy-gradient term over N samples per prompt.

    Subclasses implement :meth:`score_sets`. ``weight_name`` is the config key of λ, one name
    (``pg_weight``) for every RL objective so that it carries across a swap.
    """

    name = "sampled"
    weight_name = "pg_weight"

    def __init__(
        self,
        pg_weight: float = 1.0,
        ce_weight: float = 1.0,
        n_generations: int = 4,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 32,
        generate_every: int = 1,
        advantage_norm: AdvantageNorm = "group_std",
        pg_normalizer: str = "constant",
        kl_weight: float = 0.0,
        kl_estimator: str = "k1",
        no_signal_patience: int = 5,
        collapse_floor: float = 0.1,
        collapse_patience: int = 3,
        hacking_window: int = 6,
        micro_batch: int = 2,
    ) -> None:
        p = "objective."
        w = self.weight_name
        found = Problems()
        need = found.check  # records the message when the condition fails
        need(is_number(pg_weight) and pg_weight >= 0,
             f"{p}{w} must be a number >= 0, got {pg_weight!r}")
        need(is_number(ce_weight) and ce_weight >= 0,
             f"{p}ce_weight must be a number >= 0, got {ce_weight!r}")
        need(isinstance(n_generations, int) and not isinstance(n_generations, bool)
             and MIN_GENERATIONS <= n_generations <= MAX_GENERATIONS,
             f"{p}n_generations must be between {MIN_GENERATIONS} and {MAX_GENERATIONS}, "
             f"got {n_generations!r}")
        need(is_number(temperature) and temperature > 0,
             f"{p}temperature must be > 0, got {temperature!r}")
        need(is_number(top_p) and 0 < top_p <= 1, f"{p}top_p must be in (0, 1], got {top_p!r}")
        need(top_p == 1 or (pg_weight == 0 and kl_weight == 0),
             f"{p}top_p={top_p} is not supported by the policy-gradient term (its log-probs "
             "must be those of the distribution sampled from, and polylora does not "
             f"renormalize over the nucleus); use {p}top_p=1.0 (lower {p}temperature instead)")
        need(advantage_norm in ADVANTAGE_NORMS, f"{p}advantage_norm={advantage_norm!r} is "
             f"unknown; use one of {', '.join(ADVANTAGE_NORMS)}")
        need(pg_normalizer in PG_NORMALIZERS, f"{p}pg_normalizer={pg_normalizer!r} is "
             f"unknown; use one of {', '.join(PG_NORMALIZERS)}")
        need(is_number(kl_weight) and kl_weight >= 0,
             f"{p}kl_weight must be a number >= 0, got {kl_weight!r}")
        need(kl_estimator in KL_ESTIMATORS, f"{p}kl_estimator={kl_estimator!r} is unknown; "
             f"use one of {', '.join(KL_ESTIMATORS)} (k3 as a loss has the reverse KL's "
             "gradient)")
        for key, value in (("max_new_tokens", max_new_tokens), ("generate_every", generate_every),
                           ("no_signal_patience", no_signal_patience),
                           ("collapse_patience", collapse_patience),
                           ("hacking_window", hacking_window),
                           ("micro_batch", micro_batch)):
            need(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                 f"{p}{key} must be an integer >= 1, got {value!r}")
        need(is_number(collapse_floor) and 0 <= collapse_floor <= 1,
             f"{p}collapse_floor must be in [0, 1], got {collapse_floor!r}")
        if all(is_number(x) for x in (ce_weight, pg_weight, kl_weight)):  # else listed above
            need(ce_weight > 0 or pg_weight > 0 or kl_weight > 0,
                 f"{p}ce_weight and {p}{w} are both 0: nothing to train; set one > 0")
            need(ce_weight > 0 or generate_every == 1,
                 f"{p}ce_weight=0 (pure RL) needs {p}generate_every=1: the steps in between "
                 "would have no loss")
        found.raise_any()
        self.pg_weight = float(pg_weight)
        self.ce_weight = float(ce_weight)
        self.n_generations = n_generations
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.max_new_tokens = max_new_tokens
        self.generate_every = generate_every
        self.advantage_norm = advantage_norm
        self.pg_normalizer = pg_normalizer
        self.kl_weight = float(kl_weight)
        self.kl_estimator = kl_estimator
        self.no_signal_patience = no_signal_patience
        self.collapse_floor = float(collapse_floor)
        self.collapse_patience = collapse_patience
        self.hacking_window = hacking_window
        # Prompts per backward of the PG and CE passes (memory, not the estimator: not a
        # logged param).
        self.micro_batch = micro_batch
        self.monitor = TrainingMonitor(collapse_floor, collapse_patience, hacking_window,
                                       weight_name=w)
        self.no_signal = NoSignalMonitor(no_signal_patience)
        self.warnings: list[MonitorWarning] = []
        self.last_scored: SetScores | None = None
        self.last_advantages: list[list[float]] = []
        self._prompt_cache: dict[int, list[int]] = {}
        self._micro_batches = 0  # the fallback step counter (no Trainer telling the step)
        self._seen_step: int | None = None
        self._micro_in_step = 0
        self._step_obs: list[tuple[float, float, bool]] = []

    # ---------------------------------------------------------------- plumbing

    @property
    def generates(self) -> bool:
        """Whether any step samples: λ = 0 and β = 0 is CE (no generation at all)."""
        return self.pg_weight > 0 or self.kl_weight > 0

    def bind(self, context: ObjectiveContext) -> None:
        """Keep the context; the prompt-id cache belongs to one training set."""
        super().bind(context)
        self.check_data(context.checker is not None)
        self._prompt_cache.clear()

    def params(self) -> dict[str, Any]:
        """The core's knobs, for MLflow params (subclasses add theirs)."""
        return {
            "name": self.name, self.weight_name: self.pg_weight, "ce_weight": self.ce_weight,
            "n_generations": self.n_generations, "temperature": self.temperature,
            "top_p": self.top_p, "max_new_tokens": self.max_new_tokens,
            "generate_every": self.generate_every, "advantage_norm": self.advantage_norm,
            "pg_normalizer": self.pg_normalizer, "kl_weight": self.kl_weight,
            "kl_estimator": self.kl_estimator, "no_signal_patience": self.no_signal_patience,
            "collapse_floor": self.collapse_floor, "collapse_patience": self.collapse_patience,
            "hacking_window": self.hacking_window,
        }

    def prompt_ids(self, example_indices: Sequence[int]) -> list[list[int]]:
        """Token ids of each example's rendered prompt (as the evaluation renders it for
        sampling, no truncation), cached per training-set index."""
        ctx = self.context
        out = []
        for index in example_indices:
            if index not in self._prompt_cache:
                text = render_prompt(ctx.examples[index], ctx.tokenizer, ctx.prompt_format)
                self._prompt_cache[index] = list(
                    ctx.tokenizer(text, add_special_tokens=False)["input_ids"]
                )
            out.append(self._prompt_cache[index])
        return out

    def generate(
        self, model: torch.nn.Module, prompt_ids: list[list[int]]
    ) -> tuple[list[list[list[int]]], list[list[str]]]:
        """N samples per prompt in one batched ``generation.sample`` call (no grad, eval mode)."""
        params = SamplingParams(n=self.n_generations, temperature=self.temperature,
                                top_p=self.top_p, max_new_tokens=self.max_new_tokens)
        out = sample(model, self.context.tokenizer, prompt_ids, params,
                     batch_size=max(len(prompt_ids), 1))
        return out.token_ids, out.texts

    def scale_advantages(self, advantages: Sequence[Sequence[float]]) -> list[list[float]]:
        """The raw advantages as the policy gradient weighs them (``advantage_norm``)."""
        return normalize_advantages(advantages, self.advantage_norm)

    @abstractmethod
    def score_sets(self, examples: Sequence[Example], texts: list[list[str]]) -> SetScores:
        """Raw per-sample advantages (and qualities) of each prompt's sample set."""

    # ---------------------------------------------------------------- the PG term

    def pg_terms(
        self,
        model: torch.nn.Module,
        prompt_ids: Sequence[Sequence[int]],
        sample_ids: Sequence[Sequence[Sequence[int]]],
        advantages: Sequence[Sequence[float]],
        backward: Callable[[torch.Tensor], Any] | None = None,
        loss_scale: float = 1.0,
        keep_last: bool = False,
    ) -> PGTerms:
        """The PG loss (and KL) of the samples WITH grad, dropout off (as when sampling).

        Skipped (exactly 0, no forward) when every advantage is 0 and β = 0. With
        ``backward``, the pass runs ``micro_batch`` prompts at a time and backpropagates
        ``loss_scale · (λ·PG + β·KL)`` of each micro-batch at once (all but the last when
        ``keep_last``), so only one micro-batch's graph is alive; those parts come back
        detached. Without it, one pass over all prompts (one graph, as before).
        """
        device = next(model.parameters()).device
        flat = [float(a) for aa in advantages for a in aa]
        if not flat or (self.kl_weight == 0 and all(a == 0.0 for a in flat)):
            zero = torch.zeros((), device=device)
            return PGTerms(pg_loss=zero, skipped=True)
        size = self.micro_batch if backward is not None else max(len(prompt_ids), 1)
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
            pg = self._reduce(-adv * logp.sum(1), mask, len(flat))
            kl = None
            if self.kl_weight > 0:
                with torch.no_grad(), self._base_model(model):
                    ref, _ = self.sample_logprobs(model, prompts, samples)
                surrogate, estimate = kl_surrogate(logp, ref, mask, self.kl_estimator)
                kl = self._reduce(surrogate, mask, len(flat))
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
        tok = self.context.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        with eval_mode(model):
            if getattr(model, "module", model) is model:
                shared = prefix_token_logprobs(model, prompt_ids, sample_ids, pad,
                                               self.temperature)
                if shared is not None:
                    return shared
            packed = pack(prompt_ids, sample_ids, pad, next(model.parameters()).device)
            return packed.token_logprobs(model, self.temperature), packed.target_mask

    def _reduce(self, per_sample_sums: torch.Tensor, mask: torch.Tensor,
                total: int) -> torch.Tensor:
        """Σ over a sample's tokens → one number: / (R · max_new_tokens) or per-sample mean,
        R = ``total`` samples of the step (these rows may be one micro-batch of them)."""
        if self.pg_normalizer == "constant":
            return per_sample_sums.sum() / (total * self.max_new_tokens)
        return (per_sample_sums / mask.sum(1).clamp(min=1)).sum() / total

    @staticmethod
    def _base_model(model: torch.nn.Module) -> AbstractContextManager[Any]:
        """Context in which ``model`` computes the frozen base model (adapter disabled)."""
        base = getattr(model, "module", model)
        if not _has_adapter(base):
            raise ConfigError("objective.kl_weight > 0 needs a LoRA adapter (lora.enabled)")
        return base.disable_adapter()

    # ---------------------------------------------------------------- the loss

    def _position(self, ga: int) -> tuple[int, int]:
        """(optimizer step, micro-batch within it): the Trainer's ``global_step`` when it set
        one (so ``generate_every`` and the monitors continue after ``train.resume``), else
        this object's own count of calls."""
        if self.global_step is None:
            step, micro = divmod(self._micro_batches, ga)
            self._micro_batches += 1
            return step, micro
        if self.global_step != self._seen_step:
            self._seen_step, self._micro_in_step = self.global_step, 0
        micro = self._micro_in_step
        self._micro_in_step += 1
        return self.global_step, micro

    def compute_loss(
        self,
        model: torch.nn.Module,
        batch: dict[str, torch.Tensor],
        num_items_in_batch: int | torch.Tensor | None,
        grad_accum_steps: int,
    ) -> LossOutput:
        """``ce_weight·CE`` every step; on generation steps add ``(λ·PG + β·KL) / ga``."""
        ga = max(int(grad_accum_steps), 1)
        if not self.generates:
            return self._ce_only(model, batch, num_items_in_batch, ga)
        step, micro = self._position(ga)
        if step % self.generate_every != 0:
            return self._ce_only(model, batch, num_items_in_batch, ga)

        indices = [int(i) for i in batch["example_index"].tolist()]
        prompts = self.prompt_ids(indices)
        unwrapped = getattr(model, "module", model)
        t0 = time.perf_counter()
        sample_ids, texts = self.generate(unwrapped, prompts)
        t1 = time.perf_counter()
        scored = self.score_sets([self.context.examples[i] for i in indices], texts)
        advantages = self.scale_advantages(scored.advantages)
        self.last_scored, self.last_advantages = scored, advantages
        t2 = time.perf_counter()
        with_ce = self.ce_weight > 0
        # With CE, the PG pass runs on the unwrapped module: one DDP forward (the CE one) per
        # backward. Without CE it must be the DDP forward itself (gradients are all-reduced).
        net = unwrapped if with_ce else model
        # Micro-batched backward (the Trainer's) only without a DDP wrapper, which expects one
        # backward per forward (its gradient all-reduce); there, one graph as before.
        backward = self.backward_fn if model is unwrapped else None
        if not with_ce and all(a == 0 for aa in advantages for a in aa) and self.kl_weight == 0:
            terms = self._zero_graph_terms(net, prompts, sample_ids)
        else:
            terms = self.pg_terms(net, prompts, sample_ids, advantages, backward=backward,
                                  loss_scale=1.0 / ga, keep_last=not with_ce)
        ce = (self._micro_batched_ce(model, batch, num_items_in_batch, ga, backward)
              if with_ce else None)
        t3 = time.perf_counter()

        extra = self.pg_weight * terms.pg_loss
        quality_loss = float(ce.detach()) * ga if ce is not None else 0.0
        combined = self.ce_weight * quality_loss + self.pg_weight * float(terms.pg_loss.detach())
        metrics: dict[str, float] = {"train/quality_loss": quality_loss}
        if terms.kl_loss is not None and terms.kl is not None:
            extra = extra + self.kl_weight * terms.kl_loss
            combined += self.kl_weight * float(terms.kl_loss.detach())
            metrics["train/kl"] = terms.kl
            metrics["train/kl_loss"] = float(terms.kl_loss.detach())
        loss = extra / ga if ce is None else (
            (ce if self.ce_weight == 1 else self.ce_weight * ce) + extra / ga)
        flat_q = [q for qs in scored.qualities for q in qs]
        diversities = (scored.diversities if scored.diversities is not None
                       else [distinct_fraction(t) for t in texts])
        has_signal = any(a != 0 for aa in scored.advantages for a in aa)
        mean_d, mean_q = float(np.mean(diversities)), float(np.mean(flat_q))
        metrics.update({
            "train/pg_loss": float(terms.pg_loss.detach()),
            "train/combined_loss": combined,
            "train/diversity_score": mean_d,
            "train/sample_quality": mean_q,
            "train/advantage_abs": float(np.mean([abs(a) for aa in advantages for a in aa])),
            "train/no_signal": float(not has_signal),
            "train/sample_tokens": float(np.mean([len(s) for ss in sample_ids for s in ss])),
            "train/generation_time_s": t1 - t0,
            "train/scoring_time_s": t2 - t1,
            # CE's forward and the PG pass (its backward too when micro-batched); the
            # remaining backward runs in the Trainer after this returns
            "train/learning_time_s": t3 - t2,
            **scored.metrics,
        })
        self._observe(step, micro, ga, mean_d, mean_q, has_signal)
        return LossOutput(loss=loss, metrics=metrics)

    def _micro_batched_ce(self, model: torch.nn.Module, batch: dict[str, torch.Tensor],
                          num_items_in_batch: int | torch.Tensor | None, ga: int,
                          backward: Callable[[torch.Tensor], Any] | None) -> torch.Tensor:
        """:func:`cross_entropy_loss` of the batch; with ``backward``, ``micro_batch`` rows at a
        time (each cut to its longest row), all but the last backpropagated here. The value
        is the same token mean: each part is divided by the whole batch's token count."""
        rows = batch["input_ids"].shape[0]
        if backward is None or rows <= self.micro_batch:
            return cross_entropy_loss(model, batch, num_items_in_batch, ga)
        labels = batch["labels"]
        denominator = (num_items_in_batch if num_items_in_batch is not None
                       else (labels[:, 1:] != IGNORE_INDEX).sum().clamp(min=1) * ga)
        parts = []
        for r0 in range(0, rows, self.micro_batch):
            mask = batch["attention_mask"][r0 : r0 + self.micro_batch]
            width = int(mask.sum(1).max())  # right-padded: later columns are all padding
            if bool(mask[:, width:].any()):
                width = mask.shape[1]
            sub = {key: batch[key][r0 : r0 + self.micro_batch, :width]
                   for key in ("input_ids", "attention_mask", "labels")}
            nll, _ = response_token_nll_sum(model, sub)
            part = nll / denominator
            if r0 + self.micro_batch < rows:
                backward(part)
                part = part.detach()
            parts.append(part)
        return torch.stack(parts).sum()

    def _zero_graph_terms(self, model: torch.nn.Module, prompts: list[list[int]],
                          sample_ids: list[list[list[int]]]) -> PGTerms:
        """Pure RL with no signal: a 0-valued loss that still has a graph (zero gradient)."""
        tok = self.context.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        device = next(model.parameters()).device
        packed = pack(prompts[:1], sample_ids[:1], pad, device)
        with eval_mode(model):
            logp = packed.token_logprobs(model, self.temperature)
        return PGTerms(pg_loss=logp.sum() * 0.0, skipped=True)

    def _ce_only(self, model: torch.nn.Module, batch: dict[str, torch.Tensor],
                 num_items_in_batch: int | torch.Tensor | None, ga: int) -> LossOutput:
        """``CrossEntropyObjective``'s loss tensor itself when ce_weight is 1 (λ = 0, or not a
        generation step), else scaled by ce_weight."""
        ce = cross_entropy_loss(model, batch, num_items_in_batch, ga)
        value = float(ce.detach()) * ga
        loss = ce if self.ce_weight == 1 else self.ce_weight * ce
        return LossOutput(loss=loss, metrics={"train/quality_loss": value,
                                              "train/combined_loss": self.ce_weight * value})

    def _observe(self, step: int, micro: int, ga: int, diversity: float, quality: float,
                 has_signal: bool) -> None:
        """Feed the monitors once per optimizer step (mean over its micro-batches)."""
        self._step_obs.append((diversity, quality, has_signal))
        if micro < ga - 1:
            return
        d = float(np.mean([o[0] for o in self._step_obs]))
        q = float(np.mean([o[1] for o in self._step_obs]))
        signal = any(o[2] for o in self._step_obs)
        self._step_obs.clear()
        fired = self.monitor.observe(step, d, q)
        if self.pg_weight > 0:
            fired += self.no_signal.observe(step, signal)
        for warning in fired:
            self.warnings.append(warning)
            emit_warning(warning)
