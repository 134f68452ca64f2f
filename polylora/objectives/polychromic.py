"""The polychromic objective: cross-entropy plus a score-function term through which the
diversity (and quality) of sampled answer sets actually reaches the LoRA gradient.

``L = L_CE − λ·D(samples)`` has no gradient from D (it is computed from sampled text). The
sound version (docs/objective.md, Hamid et al., ICLR 2026) samples N answers per prompt,
scores the set with f(S) = mean quality × diversity, gives each sample a set-level
advantage A_i, and adds the REINFORCE term ``−λ · mean_i A_i · mean_t log π(y_i,t | x)``
computed by a teacher-forced forward of the samples WITH grad; optionally ``β · KL`` to the
base model (the same network with the adapter disabled). Where it can, that forward shares
each prompt's pass with the CE term (KV cache repeated for the reference answer and the N
samples), so the prompt is run once instead of N + 1 times.

Quality and diversity are scored by :mod:`polylora.metrics` (the evaluation suite's own
functions); the advantage arithmetic is in :mod:`polylora.objectives.advantages`.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
import torch

from polylora.data.example import Example
from polylora.data.formatting import IGNORE_INDEX, left_pad, render_prompt
from polylora.errors import ConfigError
from polylora.generation import SamplingParams, sample
from polylora.metrics.diversity import DIVERSITY_METRICS, set_diversity
from polylora.metrics.embeddings import Embedder, encode_unique, get_embedder
from polylora.metrics.quality import reference_similarity_many
from polylora.objectives.advantages import (
    ADVANTAGES,
    SET_BASELINES,
    SET_SCORES,
    Subset,
    add_set_advantages,
    compute_advantages,
    subset_scorer,
)
from polylora.objectives.base import LossOutput, Objective, ObjectiveContext
from polylora.objectives.ce import cross_entropy_loss

log = logging.getLogger(__name__)

QUALITIES: tuple[str, ...] = ("checker", "reference_similarity", "none")
MIN_GENERATIONS, MAX_GENERATIONS = 2, 8


# --------------------------------------------------------------------------- monitoring


@dataclass(frozen=True)
class MonitorWarning:
    """A training-health warning: ``kind`` names the MLflow tag, ``step`` where it fired."""

    kind: str
    step: int
    message: str


class TrainingMonitor:
    """Watches (diversity, quality) per generation step for two failure signs.

    - ``diversity_collapse``: mean diversity below ``collapse_floor`` for ``patience``
      consecutive observations (the adapter answers every prompt the same way).
    - ``reward_hacking``: over the last ``window`` observations, diversity rose by more than
      ``min_change`` (mean of the later half minus the earlier half) while sample quality fell
      by more than ``min_change`` (diverse but worse answers: the diversity term is winning).

    Each warning fires once per episode and re-arms when its condition clears. Pure: no
    logging or MLflow here (see :func:`emit_warning`).
    """

    def __init__(
        self,
        collapse_floor: float = 0.1,
        patience: int = 3,
        window: int = 6,
        min_change: float = 0.05,
    ) -> None:
        self.collapse_floor = collapse_floor
        self.patience = patience
        self.window = max(window, 2)
        self.min_change = min_change
        self._below = 0
        self._collapse_active = False
        self._hacking_active = False
        self._history: deque[tuple[float, float]] = deque(maxlen=self.window)

    def observe(self, step: int, diversity: float, quality: float) -> list[MonitorWarning]:
        """Record one observation; return the warnings that fire on it."""
        out: list[MonitorWarning] = []
        self._below = self._below + 1 if diversity < self.collapse_floor else 0
        if self._below >= self.patience and not self._collapse_active:
            self._collapse_active = True
            out.append(MonitorWarning(
                "diversity_collapse", step,
                f"diversity collapse at step {step}: mean set diversity {diversity:.3f} below "
                f"objective.collapse_floor={self.collapse_floor} for {self._below} consecutive "
                "generation steps (raise objective.diversity_weight or temperature)",
            ))
        elif self._below == 0:
            self._collapse_active = False
        self._history.append((diversity, quality))
        hacking = False
        if len(self._history) == self.window:
            half = self.window // 2
            early, late = list(self._history)[:half], list(self._history)[-half:]
            d_up = np.mean([d for d, _ in late]) - np.mean([d for d, _ in early])
            q_down = np.mean([q for _, q in early]) - np.mean([q for _, q in late])
            hacking = d_up > self.min_change and q_down > self.min_change
            if hacking and not self._hacking_active:
                out.append(MonitorWarning(
                    "reward_hacking", step,
                    f"possible reward hacking at step {step}: over the last {self.window} "
                    f"generation steps diversity rose by {d_up:.3f} while sample quality fell "
                    f"by {q_down:.3f} (lower objective.diversity_weight)",
                ))
        self._hacking_active = hacking
        return out


def emit_warning(warning: MonitorWarning) -> None:
    """Log the warning and tag the active MLflow run (``polylora.warning.<kind>=step N``)."""
    log.warning(warning.message)
    try:
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.set_tag(f"polylora.warning.{warning.kind}", f"step {warning.step}")
    except Exception as exc:  # tracking must never stop training
        log.debug("could not tag the MLflow run: %s", exc)


# --------------------------------------------------------------------------- scoring


class _LookupEmbedder:
    """Vectors computed in ONE encode call per step, then looked up: lets the shared
    ``set_diversity`` / ``reference_similarity_many`` run on every subset of every set
    without re-encoding (unknown texts fall back to the real embedder)."""

    def __init__(self, texts: Sequence[str], base: Embedder,
                 known: dict[str, np.ndarray] | None = None) -> None:
        self.base = base
        self.table: dict[str, np.ndarray] = dict(known or {})
        todo = [t for t in dict.fromkeys(texts) if t not in self.table]
        if todo:
            self.table.update(zip(todo, encode_unique(todo, base), strict=True))

    def encode(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.table]
        if missing:
            self.table.update(zip(missing, np.asarray(self.base.encode(missing)), strict=True))
        if not texts:
            dim = next(iter(self.table.values())).shape[-1] if self.table else 0
            return np.zeros((0, dim), dtype=np.float32)
        return np.stack([self.table[t] for t in texts]).astype(np.float32)


@dataclass
class ScoredSets:
    """One step's sample sets (one per prompt) with their scores and advantages."""

    texts: list[list[str]]
    qualities: list[list[float]]
    diversities: list[float]
    set_scores: list[float]
    advantages: list[list[float]]


@dataclass
class PGTerms:
    """The score-function loss (unscaled micro-batch mean), optional KL, and diagnostics."""

    pg_loss: torch.Tensor
    kl: torch.Tensor | None = None
    mean_logprob: float = 0.0
    n_tokens: int = 0
    skipped: bool = False


def _checkpointing(model: torch.nn.Module) -> bool:
    """Whether activation (gradient) checkpointing is on: it turns the KV cache off."""
    flag = getattr(model, "is_activation_checkpointing", None)
    if flag is None:
        flag = getattr(model, "is_gradient_checkpointing", False)
    return bool(flag() if callable(flag) else flag)


def _k3(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Schulman's k3 KL estimate ``exp(r) − r − 1``, ``r = log π_ref − log π_θ`` (unbiased,
    ≥ 0), averaged over each sample's tokens, then over samples."""
    log_ratio = (ref_logp - logp) * mask
    k3 = (torch.exp(log_ratio) - log_ratio - 1) * mask
    return (k3.sum(1) / mask.sum(1).clamp(min=1)).mean()


@dataclass
class _Packed:
    """Teacher-forcing input for the samples: ids/mask of [prompt | sample] rows, the sample
    columns' targets and mask."""

    ids: torch.Tensor
    mask: torch.Tensor
    width_s: int
    targets: torch.Tensor
    target_mask: torch.Tensor

    def token_logprobs(self, net: torch.nn.Module) -> torch.Tensor:
        """log π(y_t | x, y_<t) at every sample column (0 where there is no token)."""
        if self.width_s == 0:
            return torch.zeros(self.targets.shape, device=self.ids.device)
        inputs = {"input_ids": self.ids, "attention_mask": self.mask,
                  "position_ids": (self.mask.cumsum(-1) - 1).clamp(min=0)}
        try:  # logits only where needed (SmolLM2's lm_head is ~20% of its FLOPs)
            out = net(**inputs, logits_to_keep=self.width_s + 1)
        except TypeError:  # a model without logits_to_keep
            out = net(**inputs)
        logits = out.logits[:, -(self.width_s + 1) : -1].float()
        logp = torch.log_softmax(logits, dim=-1)
        return logp.gather(-1, self.targets.unsqueeze(-1)).squeeze(-1) * self.target_mask

    def per_sample(self, values: torch.Tensor) -> torch.Tensor:
        """Mean over each sample's own tokens (0 for an empty sample)."""
        return (values * self.target_mask).sum(1) / self.target_mask.sum(1).clamp(min=1)


# --------------------------------------------------------------------------- the objective


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


class PolychromicObjective(Objective):
    """CE + λ · set-advantage REINFORCE term (+ β · KL to the base model).

    Args mirror ``conf/objective/polychromic.yaml``; ``docs/objective.md`` explains each and
    its cost. ``embedder`` replaces the shared MiniLM (tests pass a fake one).
    """

    name = "polychromic"

    def __init__(
        self,
        diversity_weight: float = 0.3,
        n_generations: int = 3,
        diversity_metric: str = "semantic",
        quality: str = "checker",
        set_score: str = "polychromic",
        advantage: str = "marginal",
        set_baseline: str = "none",
        kl_weight: float = 0.0,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 32,
        generate_every: int = 1,
        collapse_floor: float = 0.1,
        collapse_patience: int = 3,
        hacking_window: int = 6,
        embedder: Embedder | None = None,
    ) -> None:
        p = "objective."
        _require(_is_number(diversity_weight) and diversity_weight >= 0,
                 f"{p}diversity_weight must be a number >= 0, got {diversity_weight!r}")
        _require(isinstance(n_generations, int) and not isinstance(n_generations, bool)
                 and MIN_GENERATIONS <= n_generations <= MAX_GENERATIONS,
                 f"{p}n_generations must be between {MIN_GENERATIONS} and {MAX_GENERATIONS}, "
                 f"got {n_generations!r}")
        _require(diversity_metric in DIVERSITY_METRICS,
                 f"{p}diversity_metric={diversity_metric!r} is unknown; use one of "
                 f"{', '.join(DIVERSITY_METRICS)}")
        _require(quality in QUALITIES,
                 f"{p}quality={quality!r} is unknown; use one of {', '.join(QUALITIES)}")
        _require(set_score in SET_SCORES,
                 f"{p}set_score={set_score!r} is unknown; use one of {', '.join(SET_SCORES)}")
        _require(advantage in ADVANTAGES,
                 f"{p}advantage={advantage!r} is unknown; use one of {', '.join(ADVANTAGES)}")
        _require(set_baseline in SET_BASELINES,
                 f"{p}set_baseline={set_baseline!r} is unknown; use one of "
                 f"{', '.join(SET_BASELINES)}")
        _require(_is_number(kl_weight) and kl_weight >= 0,
                 f"{p}kl_weight must be a number >= 0, got {kl_weight!r}")
        _require(_is_number(temperature) and temperature > 0,
                 f"{p}temperature must be > 0, got {temperature!r}")
        _require(_is_number(top_p) and 0 < top_p <= 1,
                 f"{p}top_p must be in (0, 1], got {top_p!r}")
        for key, value in (("max_new_tokens", max_new_tokens), ("generate_every", generate_every),
                           ("collapse_patience", collapse_patience),
                           ("hacking_window", hacking_window)):
            _require(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                     f"{p}{key} must be an integer >= 1, got {value!r}")
        _require(_is_number(collapse_floor) and 0 <= collapse_floor <= 1,
                 f"{p}collapse_floor must be in [0, 1], got {collapse_floor!r}")
        self.diversity_weight = float(diversity_weight)
        self.n_generations = n_generations
        self.diversity_metric = diversity_metric
        self.quality = quality
        self.set_score = set_score
        self.advantage = advantage
        self.set_baseline = set_baseline
        self.kl_weight = float(kl_weight)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.max_new_tokens = max_new_tokens
        self.generate_every = generate_every
        self.collapse_floor = float(collapse_floor)
        self.collapse_patience = collapse_patience
        self.hacking_window = hacking_window
        self.embedder = embedder
        self.needs_checker = quality == "checker"
        self.monitor = TrainingMonitor(collapse_floor, collapse_patience, hacking_window)
        self.warnings: list[MonitorWarning] = []
        self.last_scored: ScoredSets | None = None
        self._prompt_cache: dict[int, list[int]] = {}
        self._reference_vectors: dict[str, np.ndarray] = {}
        self._micro_batches = 0
        self._step_obs: list[tuple[float, float]] = []
        if self.diversity_weight > 0 and n_generations == 2 and set_baseline == "none":
            log.warning(
                "objective.n_generations=2: one pair per prompt, so both samples share its "
                "diversity equally and the within-set advantages carry no diversity signal "
                "(zero under set_score=polychromic); use n_generations >= 3 or "
                "objective.set_baseline=batch (docs/objective.md)"
            )

    # ---------------------------------------------------------------- plumbing

    @property
    def generates(self) -> bool:
        """Whether any step samples: λ = 0 and β = 0 is exactly CE (no generation)."""
        return self.diversity_weight > 0 or self.kl_weight > 0

    def check_data(self, has_checker: bool) -> None:
        """quality=checker needs a task checker (runs before any model loads)."""
        if self.quality == "checker" and not has_checker and self.generates:
            raise ConfigError(
                "objective.quality=checker needs a task checker but the data has none "
                "(data=words has a checker); use objective.quality=reference_similarity for "
                "data without one"
            )

    def bind(self, context: ObjectiveContext) -> None:
        """Keep the context; the prompt-id cache belongs to one training set."""
        super().bind(context)
        self.check_data(context.checker is not None)
        self._prompt_cache.clear()
        self._reference_vectors.clear()

    def params(self) -> dict[str, Any]:
        """Every knob, for MLflow params."""
        return {
            "name": self.name, "diversity_weight": self.diversity_weight,
            "n_generations": self.n_generations, "diversity_metric": self.diversity_metric,
            "quality": self.quality, "set_score": self.set_score, "advantage": self.advantage,
            "set_baseline": self.set_baseline,
            "kl_weight": self.kl_weight, "temperature": self.temperature, "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens, "generate_every": self.generate_every,
            "collapse_floor": self.collapse_floor, "collapse_patience": self.collapse_patience,
            "hacking_window": self.hacking_window,
        }

    def prompt_ids(self, example_indices: Sequence[int]) -> list[list[int]]:
        """Token ids of each example's rendered prompt, cached per training-set index.

        Rendered exactly as the evaluation renders prompts for sampling (no truncation), so
        the samples scored here are the kind the evaluation will score.
        """
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
        """N samples per prompt in ONE batched ``generate`` call (no grad, eval mode)."""
        params = SamplingParams(n=self.n_generations, temperature=self.temperature,
                                top_p=self.top_p, max_new_tokens=self.max_new_tokens)
        out = sample(model, self.context.tokenizer, prompt_ids, params,
                     batch_size=max(len(prompt_ids), 1))
        return out.token_ids, out.texts

    # ---------------------------------------------------------------- scoring

    def _qualities(self, examples: Sequence[Example], texts: list[list[str]],
                   embedder: Embedder | None) -> list[list[float]]:
        if self.quality == "none":
            return [[1.0] * len(t) for t in texts]
        if self.quality == "reference_similarity":
            flat = [s for t in texts for s in t]
            refs = [list(e.all_references) for e, t in zip(examples, texts, strict=True)
                    for _ in t]
            scores = reference_similarity_many(flat, refs, embedder)
            out, i = [], 0
            for t in texts:
                out.append(scores[i : i + len(t)])
                i += len(t)
            return out
        checker = self.context.checker
        if checker is None:
            raise ConfigError("objective.quality=checker but the data has no checker")
        batch = getattr(checker, "check_batch", None)
        out = []
        for example, samples in zip(examples, texts, strict=True):
            results = (list(batch([(example, s) for s in samples])) if callable(batch)
                       else [checker(example, s) for s in samples])
            out.append([1.0 if r.correct else 0.0 for r in results])
        return out

    def score(self, examples: Sequence[Example], texts: list[list[str]]) -> ScoredSets:
        """Quality per sample, diversity and set score per set, advantages per sample.

        At most one embedding call per step (the samples, plus references not seen before:
        those are kept for the run) when the metric or quality needs embeddings; every
        subset's diversity then reuses those vectors.
        """
        embedder: Embedder | None = None
        if self.diversity_metric == "semantic" or self.quality == "reference_similarity":
            needed = [s for t in texts for s in t]
            refs = ([r for e in examples for r in e.all_references]
                    if self.quality == "reference_similarity" else [])
            lookup = _LookupEmbedder(needed + refs, self.embedder or get_embedder(),
                                     self._reference_vectors)
            # References are fixed per example: encode each once per training run.
            self._reference_vectors.update((r, lookup.table[r]) for r in refs)
            embedder = lookup
        qualities = self._qualities(examples, texts, embedder)
        diversities, set_scores, advantages = [], [], []
        for samples, q in zip(texts, qualities, strict=True):

            @cache
            def diversity_of(subset: Subset, samples: list[str] = samples) -> float:
                return set_diversity([samples[i] for i in subset], self.diversity_metric,
                                     embedder)  # type: ignore[arg-type]

            f = subset_scorer(q, diversity_of, self.set_score)  # type: ignore[arg-type]
            full = tuple(range(len(samples)))
            diversities.append(diversity_of(full))
            set_scores.append(f(full))
            advantages.append(compute_advantages(len(samples), f, self.advantage))  # type: ignore[arg-type]
        if self.set_baseline == "batch":
            advantages = add_set_advantages(advantages, set_scores)
        return ScoredSets(texts, qualities, diversities, set_scores, advantages)

    # ---------------------------------------------------------------- the PG term

    def _pack(
        self,
        prompt_ids: Sequence[Sequence[int]],
        sample_ids: Sequence[Sequence[Sequence[int]]],
        device: torch.device,
    ) -> _Packed:
        """[prompt + sample] rows, prompts left-padded and samples right-padded, so every
        sample starts at the same column (one forward; logits kept for sample columns only)."""
        rows = [(list(p), list(s)) for p, ss in zip(prompt_ids, sample_ids, strict=True)
                for s in ss]
        tok = self.context.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        width_p = max(len(p) for p, _ in rows)
        width_s = max(len(s) for _, s in rows)
        if width_p == 0:
            raise ValueError("the polychromic PG term needs a non-empty prompt for every sample")
        ids = torch.full((len(rows), width_p + width_s), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, (p, s) in enumerate(rows):
            ids[r, width_p - len(p) : width_p + len(s)] = torch.tensor(p + s, dtype=torch.long)
            mask[r, width_p - len(p) : width_p + len(s)] = 1
        ids, mask = ids.to(device), mask.to(device)
        return _Packed(ids=ids, mask=mask, width_s=width_s,
                       targets=ids[:, width_p:], target_mask=mask[:, width_p:].float())

    def sample_logprobs(
        self,
        model: torch.nn.Module,
        prompt_ids: Sequence[Sequence[int]],
        sample_ids: Sequence[Sequence[Sequence[int]]],
    ) -> torch.Tensor:
        """Mean token log-prob ``mean_t log π(y_i,t | x)`` of every sample (prompt-major
        order), WITH grad; an empty sample gets 0."""
        packed = self._pack(prompt_ids, sample_ids, next(model.parameters()).device)
        return packed.per_sample(packed.token_logprobs(model))

    def pg_loss_from_samples(
        self,
        model: torch.nn.Module,
        prompt_ids: Sequence[Sequence[int]],
        sample_ids: Sequence[Sequence[Sequence[int]]],
        advantages: Sequence[Sequence[float]],
    ) -> PGTerms:
        """``−mean_i A_i · mean_t log π(y_i,t | x)`` over all samples (WITH grad), plus the
        per-token KL estimate to the adapter-disabled model when β > 0.

        Position ids follow the attention mask, as in ``generate``, so the log-probs are those
        the sampler used (up to dropout). When every advantage is 0 and β = 0 the forward is
        skipped: the term is exactly 0 and so is its gradient.
        """
        device = next(model.parameters()).device
        flat_adv = [float(a) for aa in advantages for a in aa]
        if not flat_adv or (self.kl_weight == 0 and all(a == 0.0 for a in flat_adv)):
            zero = torch.zeros((), device=device)
            return PGTerms(pg_loss=zero, kl=zero if self.kl_weight > 0 else None, skipped=True)
        packed = self._pack(prompt_ids, sample_ids, device)
        logp = packed.token_logprobs(model)
        per_sample = packed.per_sample(logp)
        adv = torch.tensor(flat_adv, device=device, dtype=per_sample.dtype)
        terms = PGTerms(pg_loss=-(adv * per_sample).mean(),
                        mean_logprob=float(per_sample.detach().mean()),
                        n_tokens=int(packed.target_mask.sum()))
        if self.kl_weight > 0:
            with torch.no_grad(), self._base_model(model):
                ref = packed.token_logprobs(model)
            terms.kl = _k3(logp, ref, packed.target_mask)
        return terms

    def prefix_logprobs(
        self,
        net: torch.nn.Module,
        prompt_ids: Sequence[Sequence[int]],
        continuations: Sequence[Sequence[Sequence[int]]],
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """log π of every continuation token given its prompt, running each prompt ONCE.

        The B prompts (left-padded) go through the model with a KV cache; the cache is
        repeated for each prompt's K continuations (the same K for all), which then run from
        it. Gradients flow through the cache into the prompt forward, so this equals
        teacher-forcing ``[prompt + continuation]`` row by row, at the cost of B·P + B·K·L
        token positions instead of B·K·(P + L). Returns ``(logp, mask)`` of shape (B·K, L)
        in prompt-major order, or None when the model returns no cache (e.g. gradient
        checkpointing turns it off) or takes no ``logits_to_keep``.
        """
        k = len(continuations[0]) if continuations else 0
        if k == 0 or any(len(c) != k for c in continuations):
            raise ValueError("prefix_logprobs needs the same number of continuations per prompt")
        device = next(net.parameters()).device
        tok = self.context.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        p_ids, p_mask = (t.to(device) for t in left_pad(prompt_ids, pad))
        try:
            out = net(input_ids=p_ids, attention_mask=p_mask, use_cache=True, logits_to_keep=1,
                      position_ids=(p_mask.cumsum(-1) - 1).clamp(min=0))
        except TypeError:  # a model without logits_to_keep: use the separate passes
            return None
        cache = getattr(out, "past_key_values", None)
        if cache is None or not hasattr(cache, "batch_repeat_interleave"):
            return None
        rows = [list(c) for cs in continuations for c in cs]
        width = max(len(c) for c in rows)
        c_ids = torch.full((len(rows), max(width, 1)), pad, dtype=torch.long)
        c_mask = torch.zeros_like(c_ids)
        for r, c in enumerate(rows):
            c_ids[r, : len(c)] = torch.tensor(c, dtype=torch.long)
            c_mask[r, : len(c)] = 1
        c_ids, c_mask = c_ids.to(device), c_mask.to(device)
        logits = [out.logits[:, -1:].repeat_interleave(k, dim=0)]  # predicts token 0
        if width > 1:
            cache.batch_repeat_interleave(k)
            start = p_mask.sum(1).repeat_interleave(k)[:, None]
            out2 = net(input_ids=c_ids[:, :-1], past_key_values=cache, use_cache=True,
                       attention_mask=torch.cat([p_mask.repeat_interleave(k, dim=0),
                                                 c_mask[:, :-1]], dim=1),
                       position_ids=start + torch.arange(width - 1, device=device))
            logits.append(out2.logits)
        logp = torch.log_softmax(torch.cat(logits, dim=1).float(), dim=-1)
        mask = c_mask.float()
        return logp.gather(-1, c_ids.unsqueeze(-1)).squeeze(-1) * mask, mask

    def _fused_losses(
        self,
        model: torch.nn.Module,
        batch: dict[str, torch.Tensor],
        prompts: list[list[int]],
        sample_ids: list[list[list[int]]],
        advantages: list[list[float]],
        num_items_in_batch: int | torch.Tensor | None,
        grad_accum_steps: int,
    ) -> tuple[torch.Tensor, PGTerms] | None:
        """CE and the PG term from ONE pass: each prompt runs once, then its reference answer
        and its N samples run from the prompt's cache (:meth:`prefix_logprobs`).

        Same math as ``cross_entropy_loss`` + :meth:`pg_loss_from_samples` (tested). None
        (use the separate passes) when a training row's prompt is not the rendered prompt
        (truncated by ``data.max_length``) or the model gives no cache.
        """
        answers: list[list[int]] = []
        targets: list[list[bool]] = []
        for b, prompt in enumerate(prompts):
            n = int(batch["attention_mask"][b].sum())
            labels = batch["labels"][b, :n]
            labelled = (labels != IGNORE_INDEX).nonzero()
            p_len = int(labelled[0]) if len(labelled) else n
            if p_len == 0 or batch["input_ids"][b, :p_len].tolist() != prompt:
                return None
            answers.append(batch["input_ids"][b, p_len:n].tolist())
            targets.append((labels[p_len:n] != IGNORE_INDEX).tolist())
        result = self.prefix_logprobs(
            model, prompts, [[a, *ss] for a, ss in zip(answers, sample_ids, strict=True)]
        )
        if result is None:
            return None
        logp, mask = result
        k = self.n_generations + 1
        ce_rows = torch.arange(len(prompts), device=logp.device) * k
        is_sample = torch.ones(logp.shape[0], dtype=torch.bool, device=logp.device)
        is_sample[ce_rows] = False
        ce_mask = torch.zeros_like(mask[ce_rows])
        for b, t in enumerate(targets):
            ce_mask[b, : len(t)] = torch.tensor(t, dtype=ce_mask.dtype)
        nll = -(logp[ce_rows] * ce_mask).sum()
        if num_items_in_batch is not None:
            ce = nll / num_items_in_batch
        else:
            ce = nll / ce_mask.sum().clamp(min=1) / grad_accum_steps
        s_logp, s_mask = logp[is_sample], mask[is_sample]
        per_sample = s_logp.sum(1) / s_mask.sum(1).clamp(min=1)
        adv = torch.tensor([a for aa in advantages for a in aa], device=logp.device)
        terms = PGTerms(pg_loss=-(adv * per_sample).mean(),
                        mean_logprob=float(per_sample.detach().mean()),
                        n_tokens=int(s_mask.sum()))
        if self.kl_weight > 0:
            with torch.no_grad(), self._base_model(model):
                ref = self.prefix_logprobs(model, prompts, sample_ids)
            if ref is None:
                return None
            width = ref[0].shape[1]
            terms.kl = _k3(s_logp[:, :width], ref[0], s_mask[:, :width])
        return ce, terms

    @staticmethod
    def _base_model(model: torch.nn.Module) -> Any:
        """Context in which ``model`` computes the frozen base model (adapter disabled)."""
        base = getattr(model, "module", model)
        if not hasattr(base, "disable_adapter"):
            raise ConfigError("objective.kl_weight > 0 needs a LoRA adapter (lora.enabled)")
        return base.disable_adapter()

    # ---------------------------------------------------------------- the loss

    def compute_loss(
        self,
        model: torch.nn.Module,
        batch: dict[str, torch.Tensor],
        num_items_in_batch: int | torch.Tensor | None,
        grad_accum_steps: int,
    ) -> LossOutput:
        """CE every step; on generation steps add ``(λ·pg + β·kl) / grad_accum_steps``.

        On generation steps the CE and PG forwards share each prompt's forward when they can
        (:meth:`_fused_losses`); otherwise CE runs as in ``CrossEntropyObjective`` and the
        samples get their own teacher-forced forward.
        """
        ga = max(int(grad_accum_steps), 1)
        if not self.generates:
            return self._ce_only(model, batch, num_items_in_batch, ga)
        step, micro = divmod(self._micro_batches, ga)
        self._micro_batches += 1
        if step % self.generate_every != 0:
            return self._ce_only(model, batch, num_items_in_batch, ga)

        indices = [int(i) for i in batch["example_index"].tolist()]
        prompts = self.prompt_ids(indices)
        unwrapped = getattr(model, "module", model)
        t0 = time.perf_counter()
        sample_ids, texts = self.generate(unwrapped, prompts)
        t1 = time.perf_counter()
        scored = self.score([self.context.examples[i] for i in indices], texts)
        self.last_scored = scored
        t2 = time.perf_counter()
        no_signal = self.kl_weight == 0 and all(a == 0 for aa in scored.advantages for a in aa)
        fused = None
        if not no_signal and unwrapped is model and not _checkpointing(model):
            fused = self._fused_losses(model, batch, prompts, sample_ids, scored.advantages,
                                       num_items_in_batch, ga)
        if fused is not None:
            ce, terms = fused
        else:
            ce = cross_entropy_loss(model, batch, num_items_in_batch, ga)
            # On the unwrapped module: one DDP forward (the CE one) per backward.
            terms = self.pg_loss_from_samples(unwrapped, prompts, sample_ids, scored.advantages)
        t3 = time.perf_counter()

        quality_loss = float(ce.detach()) * ga  # this micro-batch's share, unscaled
        extra = self.diversity_weight * terms.pg_loss
        combined = quality_loss + self.diversity_weight * float(terms.pg_loss.detach())
        metrics = {"train/quality_loss": quality_loss}
        if terms.kl is not None:
            extra = extra + self.kl_weight * terms.kl
            combined += self.kl_weight * float(terms.kl.detach())
            metrics["train/kl"] = float(terms.kl.detach())
        loss = ce + extra / ga
        flat_q = [q for qs in scored.qualities for q in qs]
        flat_a = [abs(a) for aa in scored.advantages for a in aa]
        mean_d = float(np.mean(scored.diversities))
        mean_q = float(np.mean(flat_q))
        metrics.update({
            "train/pg_loss": float(terms.pg_loss.detach()),
            "train/combined_loss": combined,
            "train/diversity_score": mean_d,
            "train/sample_quality": mean_q,
            "train/set_score": float(np.mean(scored.set_scores)),
            "train/advantage_abs": float(np.mean(flat_a)),
            "train/sample_tokens": float(np.mean([len(s) for ss in sample_ids for s in ss])),
            "train/generation_time_s": t1 - t0,
            "train/scoring_time_s": t2 - t1,
            "train/shared_prompt_pass": float(fused is not None),
            # the forwards (CE + PG); the backward runs in the Trainer after this returns
            "train/learning_time_s": t3 - t2,
        })
        self._observe(step, micro, ga, mean_d, mean_q)
        return LossOutput(loss=loss, metrics=metrics)

    @staticmethod
    def _ce_only(model: torch.nn.Module, batch: dict[str, torch.Tensor],
                 num_items_in_batch: int | torch.Tensor | None, ga: int) -> LossOutput:
        """Exactly ``CrossEntropyObjective``'s loss tensor (λ = 0, or not a generation step)."""
        ce = cross_entropy_loss(model, batch, num_items_in_batch, ga)
        value = float(ce.detach()) * ga
        return LossOutput(loss=ce, metrics={"train/quality_loss": value,
                                            "train/combined_loss": value})

    def _observe(self, step: int, micro: int, ga: int, diversity: float, quality: float) -> None:
        """Feed the monitor once per optimizer step (mean over its micro-batches)."""
        self._step_obs.append((diversity, quality))
        if micro < ga - 1:
            return
        d = float(np.mean([o[0] for o in self._step_obs]))
        q = float(np.mean([o[1] for o in self._step_obs]))
        self._step_obs.clear()
        for warning in self.monitor.observe(step, d, q):
            self.warnings.append(warning)
            emit_warning(warning)
