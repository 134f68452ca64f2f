"""The sampled-set policy-gradient core shared by the RL objectives (polychromic, grpo, passk):
the objective class that runs one step, from sampling to the loss, out of the modules below.

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
disabled), see :func:`polylora.objectives.logprobs.kl_surrogate`. The CE rows (LoRA dropout on)
and the sample rows (off) go through ONE teacher-forced pass (:mod:`.single_pass`); the Trainer
does the accumulation, checkpointing and the backward. A step runs whole unless its estimated
autograd memory exceeds ``memory_budget_mb`` (or ``micro_batch`` is set): then it runs a few
prompts at a time through the Trainer's backward (the ``backward`` argument of
:meth:`SampledSetObjective.compute_loss`), with the loss value and gradients of the single
pass (CE's dropout masks are drawn per micro-batch: other draws, same distribution). Models
without a decoder/head split, under gradient checkpointing or DDP use the separate passes
(:meth:`SampledSetObjective.pg_terms`, then CE).

The parts: settings checks (:mod:`.core_settings`), prompts and sampling (:mod:`.sampling`),
the estimator (:mod:`.estimator`), the passes within a memory budget (:mod:`.micro_batching`),
step positions, metrics and monitors (:mod:`.step_metrics`).
"""

from __future__ import annotations

import time
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from polylora.data.example import Example
from polylora.model.generation import SamplingParams
from polylora.objectives.advantages import AdvantageNorm, normalize_advantages
from polylora.objectives.base import Backward, LossOutput, Objective, ObjectiveContext
from polylora.objectives.ce import cross_entropy_loss
from polylora.objectives.core_settings import check_core_settings
from polylora.objectives.estimator import Estimator, PGTerms
from polylora.objectives.micro_batching import MemoryPlan, micro_batched_ce, single_pass_terms
from polylora.objectives.monitors import MonitorWarning, NoSignalMonitor, TrainingMonitor
from polylora.objectives.sampling import PromptCache, distinct_fraction, sample_sets
from polylora.objectives.single_pass import supports_single_pass
from polylora.objectives.step_metrics import (
    StepCounter,
    StepMonitors,
    StepTimes,
    ce_only_metrics,
    differs_from_pass1,
    generation_metrics,
)
from polylora.record import names


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
        micro_batch: int | None = None,
        memory_budget_mb: float | None = 1200.0,
    ) -> None:
        check_core_settings(
            weight_name=self.weight_name, pg_weight=pg_weight, ce_weight=ce_weight,
            n_generations=n_generations, temperature=temperature, top_p=top_p,
            max_new_tokens=max_new_tokens, generate_every=generate_every,
            advantage_norm=advantage_norm, pg_normalizer=pg_normalizer, kl_weight=kl_weight,
            kl_estimator=kl_estimator, no_signal_patience=no_signal_patience,
            collapse_floor=collapse_floor, collapse_patience=collapse_patience,
            hacking_window=hacking_window, micro_batch=micro_batch,
            memory_budget_mb=memory_budget_mb,
        )
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
        # Prompts per pass (None: by memory_budget_mb, MB, None: never split): memory, not the
        # estimator, so not logged params.
        self.micro_batch = micro_batch
        self.memory_budget_mb = None if memory_budget_mb is None else float(memory_budget_mb)
        self.monitors = StepMonitors(
            TrainingMonitor(collapse_floor, collapse_patience, hacking_window,
                            weight_name=self.weight_name),
            NoSignalMonitor(no_signal_patience), watch_signal=self.pg_weight > 0)
        self.last_scored: SetScores | None = None
        self.last_advantages: list[list[float]] = []
        self.prompt_cache = PromptCache()
        self.steps = StepCounter()

    @property
    def generates(self) -> bool:
        """Whether any step samples: λ = 0 and β = 0 is CE (no generation at all)."""
        return self.pg_weight > 0 or self.kl_weight > 0

    @property
    def warnings(self) -> list[MonitorWarning]:
        """The training-health warnings fired so far, in order."""
        return self.monitors.warnings

    def bind(self, context: ObjectiveContext) -> None:
        """Keep the context; the prompt-id cache belongs to one training set."""
        super().bind(context)
        self.prompt_cache.clear()

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
        """Token ids of each example's rendered prompt, cached per training-set index."""
        return self.prompt_cache.lookup(self.context, example_indices)

    def generate(
        self, model: torch.nn.Module, prompt_ids: list[list[int]]
    ) -> tuple[list[list[list[int]]], list[list[str]]]:
        """N samples per prompt in one batched ``generation.sample`` call (no grad, eval mode)."""
        params = SamplingParams(n=self.n_generations, temperature=self.temperature,
                                top_p=self.top_p, max_new_tokens=self.max_new_tokens)
        return sample_sets(model, self.context.tokenizer, prompt_ids, params)

    def scale_advantages(self, advantages: Sequence[Sequence[float]]) -> list[list[float]]:
        """The raw advantages as the policy gradient weighs them (``advantage_norm``)."""
        return normalize_advantages(advantages, self.advantage_norm)

    @abstractmethod
    def score_sets(self, examples: Sequence[Example], texts: list[list[str]]) -> SetScores:
        """Raw per-sample advantages (and qualities) of each prompt's sample set."""

    def estimator(self) -> Estimator:
        """The estimator under this objective's settings and the bound tokenizer's padding."""
        pad = self.context.tokenizer.pad_token_id
        return Estimator(
            temperature=self.temperature, max_new_tokens=self.max_new_tokens,
            pg_normalizer=self.pg_normalizer, ce_weight=self.ce_weight,
            pg_weight=self.pg_weight, kl_weight=self.kl_weight,
            kl_estimator=self.kl_estimator, pad_id=pad if pad is not None else 0)

    def pg_terms(
        self,
        model: torch.nn.Module,
        prompt_ids: Sequence[Sequence[int]],
        sample_ids: Sequence[Sequence[Sequence[int]]],
        advantages: Sequence[Sequence[float]],
        backward: Backward | None = None,
        loss_scale: float = 1.0,
        keep_last: bool = False,
    ) -> PGTerms:
        """The PG loss (and KL) of the samples in their own pass: :meth:`Estimator.pg_terms`
        with this objective's ``micro_batch``."""
        return self.estimator().pg_terms(model, prompt_ids, sample_ids, advantages,
                                         self.micro_batch, backward, loss_scale, keep_last)

    def compute_loss(
        self,
        model: torch.nn.Module,
        batch: dict[str, torch.Tensor],
        num_items_in_batch: int | torch.Tensor | None,
        grad_accum_steps: int,
        *,
        step: int | None = None,
        backward: Backward | None = None,
    ) -> LossOutput:
        """``ce_weight·CE`` every step; on generation steps add ``(λ·PG + β·KL) / ga``."""
        ga = max(int(grad_accum_steps), 1)
        if not self.generates:
            return self._ce_only(model, batch, num_items_in_batch, ga)
        step, micro = self.steps.position(step, ga)
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
        # backward per forward (its gradient all-reduce); there, one graph.
        inner_backward = backward if model is unwrapped else None
        estimator = self.estimator()
        no_signal = all(a == 0 for aa in advantages for a in aa) and self.kl_weight == 0
        ce: torch.Tensor | None
        if not with_ce and no_signal:
            terms, ce = estimator.zero_graph_terms(net, prompts, sample_ids), None
        elif supports_single_pass(model):
            plan = MemoryPlan(self.micro_batch, self.memory_budget_mb, self.n_generations)
            terms, ce = single_pass_terms(estimator, plan, model, batch, prompts, sample_ids,
                                          advantages, num_items_in_batch, ga, inner_backward)
        else:
            terms = estimator.pg_terms(net, prompts, sample_ids, advantages, self.micro_batch,
                                       inner_backward, loss_scale=1.0 / ga,
                                       keep_last=not with_ce)
            ce = (micro_batched_ce(model, batch, num_items_in_batch, ga, inner_backward,
                                   self.micro_batch) if with_ce else None)
        t3 = time.perf_counter()

        extra = self.pg_weight * terms.pg_loss
        quality_loss = float(ce.detach()) * ga if ce is not None else 0.0
        combined = self.ce_weight * quality_loss + self.pg_weight * float(terms.pg_loss.detach())
        metrics: dict[str, float] = {names.TRAIN_QUALITY_LOSS: quality_loss}
        if terms.kl_loss is not None and terms.kl is not None:
            extra = extra + self.kl_weight * terms.kl_loss
            combined += self.kl_weight * float(terms.kl_loss.detach())
            metrics[names.TRAIN_KL] = terms.kl
            metrics[names.TRAIN_KL_LOSS] = float(terms.kl_loss.detach())
        loss = extra / ga if ce is None else (
            (ce if self.ce_weight == 1 else self.ce_weight * ce) + extra / ga)
        flat_q = [q for qs in scored.qualities for q in qs]
        diversities = (scored.diversities if scored.diversities is not None
                       else [distinct_fraction(t) for t in texts])
        has_signal = any(a != 0 for aa in scored.advantages for a in aa)
        mean_d, mean_q = float(np.mean(diversities)), float(np.mean(flat_q))
        metrics.update({**generation_metrics(
            pg_loss=float(terms.pg_loss.detach()), combined_loss=combined, diversity=mean_d,
            quality=mean_q, advantages=advantages, has_signal=has_signal,
            sample_ids=sample_ids, times=StepTimes(t1 - t0, t2 - t1, t3 - t2)), **scored.metrics})
        contrast = differs_from_pass1(advantages, scored.qualities)
        if contrast is not None:
            metrics[names.TRAIN_DIFFERS_FROM_PASS1] = contrast
        self.monitors.observe(step, micro, ga, mean_d, mean_q, has_signal)
        return LossOutput(loss=loss, metrics=metrics)

    def _ce_only(self, model: torch.nn.Module, batch: dict[str, torch.Tensor],
                 num_items_in_batch: int | torch.Tensor | None, ga: int) -> LossOutput:
        """``CrossEntropyObjective``'s loss tensor itself when ce_weight is 1 (λ = 0, or not a
        generation step), else scaled by ce_weight."""
        ce = cross_entropy_loss(model, batch, num_items_in_batch, ga)
        value = float(ce.detach()) * ga
        loss = ce if self.ce_weight == 1 else self.ce_weight * ce
        return LossOutput(loss=loss, metrics=ce_only_metrics(value, self.ce_weight))
