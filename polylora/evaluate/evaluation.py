"""End-of-run evaluation: reference perplexity, n samples + a greedy answer per prompt on a
fixed subset, scored by the metrics suite; every generation saved for re-scoring."""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from polylora.data.checking import Checker
from polylora.data.example import Example
from polylora.data.formatting import (
    IGNORE_INDEX,
    EncodedDataset,
    PaddingCollator,
    PromptFormat,
    prompt_token_ids,
)
from polylora.data.jsonl import write_rows
from polylora.metrics.suite import EvalScores, PromptGenerations, score_generations
from polylora.model.generation import SamplingParams, eval_mode, sample_many
from polylora.record import names as record_names

MODEL_METRICS = ("test_loss", "test_perplexity")


class AdapterHook(Protocol):
    """Picks the adapter per prompt (a routed mixture of adapters): ``groups`` yields the
    indices of ``examples`` that share an adapter and the module to run them with, that
    adapter active until the next item. Without a hook, every prompt runs on the model as is."""

    def groups(self, examples: Sequence[Example]) -> Iterator[tuple[list[int], torch.nn.Module]]:
        """(indices into ``examples``, module with their adapter active), group by group."""
        ...


class SampleSpread(Protocol):
    """Draws every prompt's samples from several adapters (an ensemble): returns the n
    samples of each prompt and its greedy answer (None where ``greedy`` is None)."""

    def sample(self, tok: PreTrainedTokenizerBase, prompt_ids: Sequence[Sequence[int]],
               params: SamplingParams, greedy: SamplingParams | None, batch_size: int,
               progress: bool, autocast: torch.dtype | None
               ) -> tuple[list[list[str]], list[str | None]]:
        """(samples per prompt, greedy answer per prompt)."""
        ...


def adapter_groups(
    model: torch.nn.Module, examples: Sequence[Example], adapter: AdapterHook | None
) -> Iterator[tuple[list[int], torch.nn.Module]]:
    """The hook's groups, or one group of every example on ``model``."""
    if adapter is None:
        yield list(range(len(examples))), model
    else:
        yield from adapter.groups(examples)


def grouped_nll(
    model: torch.nn.Module,
    tok: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    fmt: PromptFormat,
    max_length: int,
    batch_size: int = 8,
    progress: bool = False,
    autocast: torch.dtype | None = None,
    adapter: AdapterHook | None = None,
) -> list[float]:
    """:func:`reference_nll` of each example under its own adapter (see :class:`AdapterHook`)."""
    out: list[float] = [0.0] * len(examples)
    for idx, module in adapter_groups(model, examples, adapter):
        values = reference_nll(module, tok, [examples[i] for i in idx], fmt, max_length,
                               batch_size, progress, autocast)
        for i, value in zip(idx, values, strict=True):
            out[i] = value
    return out


def eval_subset(examples: Sequence[Example], size: int) -> list[Example]:
    """A fixed subset chosen by example id (a hash), the same whatever the training seed."""
    ranked = sorted(examples, key=lambda e: hashlib.sha1(e.id.encode()).hexdigest())
    return sorted(ranked[:size], key=lambda e: e.id)


def reference_nll(
    model: torch.nn.Module,
    tok: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    fmt: PromptFormat,
    max_length: int,
    batch_size: int = 8,
    progress: bool = False,
    autocast: torch.dtype | None = None,
) -> list[float]:
    """Mean token NLL of each example's reference response under the model (adapter applied).

    ``batch_size`` examples per forward, batched by length (little padding); results in the
    order of ``examples``."""
    data = EncodedDataset(examples, tok, fmt, max_length)
    collate = PaddingCollator(tok.pad_token_id)
    device = next(model.parameters()).device
    order = sorted(range(len(data)), key=lambda i: len(data[i]["input_ids"]))
    out: list[float] = [0.0] * len(data)
    ctx = torch.autocast(device.type, dtype=autocast) if autocast else contextlib.nullcontext()
    with eval_mode(model), torch.no_grad(), ctx:
        for start in tqdm(range(0, len(order), batch_size), desc="perplexity",
                          disable=not progress):
            chunk = order[start : start + batch_size]
            batch = {k: v.to(device) for k, v in collate([data[i] for i in chunk]).items()}
            for i, value in zip(chunk, _mean_nll_per_row(model, batch), strict=True):
                out[i] = value
    return out


def _mean_nll_per_row(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> list[float]:
    """Each row's mean next-token NLL over its labelled positions (right-padded batch)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    labels = batch["labels"][:, 1:]
    nll = F.cross_entropy(
        logits[:, :-1, :].float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX,
        reduction="none",
    )
    counts = (labels != IGNORE_INDEX).sum(1).clamp(min=1)
    return (nll.sum(1) / counts).tolist()


@dataclass
class EvalReport:
    """Aggregate metrics (``eval/<name>``) and one row per prompt with every generation."""

    metrics: dict[str, float]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def write_jsonl(self, path: Path) -> Path:
        """Save the per-prompt rows (generations + scores) as JSONL."""
        return write_rows(self.rows, path)


def evaluate(
    model: torch.nn.Module,
    tok: PreTrainedTokenizerBase,
    examples: Sequence[Example],
    fmt: PromptFormat,
    cfg: DictConfig,
    checker: Checker | None,
    max_length: int,
    progress: bool = True,
    autocast: torch.dtype | None = None,
    adapter: AdapterHook | None = None,
    normalize: Callable[[str], str] | None = None,
    spread: SampleSpread | None = None,
) -> EvalReport:
    """Run the configured evaluation (``cfg`` is the ``eval`` group) on ``examples``.

    Each prompt is prefilled once for its n samples and its greedy answer, in batches of
    similar-length prompts (``polylora.model.generation.sample_many``); ``adapter`` picks the
    adapter per group of prompts (a routed mixture); ``normalize`` (the data source's hook)
    is how metrics that compare answers read them; ``spread`` draws each prompt's samples
    from several adapters (an ensemble)."""
    subset = eval_subset(examples, cfg.subset_size)
    names = list(cfg.metrics)
    metrics: dict[str, float] = {}
    nll: list[float] | None = None
    if any(m in names for m in MODEL_METRICS):
        nll = grouped_nll(model, tok, subset, fmt, max_length, cfg.batch_size, progress,
                          autocast, adapter)
        mean_nll = sum(nll) / len(nll)
        # The validation curve owns eval/loss; the fixed test subset's reference loss is its own.
        metrics[record_names.TEST_LOSS] = mean_nll
        metrics[record_names.TEST_PERPLEXITY] = math.exp(min(mean_nll, 50.0))
    prompt_ids = [prompt_token_ids(e, tok, fmt, max_length) for e in subset]
    params = SamplingParams(
        n=cfg.n_samples,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_new_tokens=cfg.max_new_tokens,
    )
    requests = [params]
    if cfg.greedy:
        requests.append(SamplingParams(max_new_tokens=cfg.max_new_tokens, greedy=True))
    sampled: list[list[str]] = [[] for _ in subset]
    greedy: list[str | None] = [None] * len(subset)
    if spread is not None:
        sampled, greedy = spread.sample(tok, prompt_ids, params,
                                        requests[1] if cfg.greedy else None, cfg.batch_size,
                                        progress, autocast)
    for idx, module in adapter_groups(model, subset, adapter) if spread is None else ():
        done = sample_many(module, tok, [prompt_ids[i] for i in idx], requests, cfg.batch_size,
                           progress, "eval samples" + (" + greedy" if cfg.greedy else ""),
                           sort_by_length=True, autocast=autocast)
        for j, i in enumerate(idx):
            sampled[i] = done[0].texts[j]
            if cfg.greedy:
                greedy[i] = done[1].texts[j][0]
    gens = [
        PromptGenerations(example=e, samples=s, greedy=gr)
        for e, s, gr in zip(subset, sampled, greedy, strict=True)
    ]
    text_metrics = [m for m in names if m not in MODEL_METRICS]
    scores = score_generations(
        gens, text_metrics, checker=checker, ks=tuple(cfg.ks), show_progress=progress,
        normalize=normalize,
    )
    metrics.update({record_names.EVAL_PREFIX + k: v for k, v in scores.aggregate.items()})
    rows = [
        generation_row(gen, scores, i, None if nll is None else nll[i])
        for i, gen in enumerate(gens)
    ]
    return EvalReport(metrics=metrics, rows=rows)


def generation_row(
    gen: PromptGenerations, scores: EvalScores, index: int, test_loss: float | None = None
) -> dict[str, Any]:
    """One prompt's line of ``generations.jsonl`` (read back by compare and judge)."""
    e = gen.example
    row_scores = dict(scores.per_prompt[index])
    if test_loss is not None:
        row_scores["test_loss"] = test_loss
    return {
        "id": e.id,
        "prompt": e.prompt if isinstance(e.prompt, str) else list(e.prompt),
        "references": list(e.all_references),
        "samples": gen.samples,
        "greedy": gen.greedy,
        "correct": [c.correct for c in scores.checks[index]] if scores.checks else None,
        "scores": row_scores,
    }
