"""Sampling: n completions for each of many prompts, each prompt's prefill computed once.

The public API (:func:`sample`, :func:`sample_many`, :class:`SamplingParams`,
:class:`Completions`) is what evaluation and the training objectives call. Behind it sits a
:class:`GenerationBackend`; :class:`HFBackend` (``transformers`` ``generate``) is the only
one, and docs/generation.md describes how a vLLM backend would plug in.

What makes the HF backend fast (the techniques of RL trainers' rollout engines, within
``generate``): prompts are left-padded into batches (optionally sorted by length, so a batch
wastes little on padding); each batch's prompts are run through the model ONCE (the prefill)
and the KV cache is then repeated N ways for the N samples, instead of giving ``generate`` N
copies of every prompt (``num_return_sequences``), which recomputes the prompt N times; and
several decoding requests over the same prompts (n samples and a greedy answer) reuse that
one prefill. Sampling draws the same random numbers in the same order as a plain
``generate(num_return_sequences=n)`` call on the same batch, so seeded outputs are equal.

Every call decodes with an explicit :class:`GenerationConfig` built from polylora's settings
alone (:func:`generation_config`): nothing is inherited from the model's own
``generation_config`` (a shipped repetition penalty, top-k or min-p would otherwise reshape the
distribution that the policy-gradient log-probs take to be softmax(logits / T)).
"""

from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol, cast

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, PreTrainedTokenizerBase

from polylora.data.formatting import left_pad
from polylora.model import throughput


@dataclass(frozen=True)
class SamplingParams:
    """Decoding settings; ``n`` completions per prompt; ``greedy`` ignores temperature/top_p."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 32
    greedy: bool = False


@dataclass
class Completions:
    """Per prompt: the decoded texts and the token ids (eos included, padding removed)."""

    texts: list[list[str]]
    token_ids: list[list[list[int]]]


class GenerationBackend(Protocol):
    """Anything that turns prompts into completions: the seam for other engines (vLLM).

    ``generate`` answers several decoding requests over the same prompts (e.g. n samples and
    one greedy answer) so that a backend can share each prompt's prefill between them; it
    returns one :class:`Completions` per request, prompts in the order given.
    """

    def generate(
        self,
        prompt_ids: Sequence[Sequence[int]],
        requests: Sequence[SamplingParams],
        progress: bool = False,
        desc: str = "generating",
    ) -> list[Completions]: ...


class CausalLM(Protocol):
    """What the backend uses of a transformers causal LM (or a PEFT wrapper of one) beyond
    ``nn.Module``, whose stubs type such attributes as ``Tensor | Module``."""

    generation_config: GenerationConfig

    def generate(self, *args: Any, **kwargs: Any) -> torch.Tensor: ...


@contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Dropout off while sampling; the previous mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _trim(ids: list[int], eos_ids: set[int], pad_id: int) -> list[int]:
    """Cut a completion after its first end token; drop right padding."""
    out: list[int] = []
    for t in ids:
        out.append(t)
        if t in eos_ids:
            return out
    while out and out[-1] == pad_id and pad_id not in eos_ids:
        out.pop()
    return out


def _eos_ids(model: CausalLM, tok: PreTrainedTokenizerBase) -> set[int]:
    ids = model.generation_config.eos_token_id
    found = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tok.eos_token_id is not None:
        found.add(tok.eos_token_id)
    return found


#: What a model's own ``generation_config`` may carry besides decoding settings and that
#: sampling keeps: how the cache is built (it does not change the distribution).
_KEPT_FROM_MODEL = ("cache_implementation",)


def generation_config(
    params: SamplingParams, eos_ids: Iterable[int], pad_id: int,
    model_config: GenerationConfig | None = None,
) -> GenerationConfig:
    """The decoding config of one request from polylora's settings alone: plain
    softmax(logits / T) sampling (with ``top_p``; no top-k, min-p, repetition or n-gram
    penalties, forced or suppressed tokens), or greedy. Of ``model_config`` only the cache
    implementation is kept."""
    kept = {k: getattr(model_config, k, None) for k in _KEPT_FROM_MODEL}
    off: dict[str, Any] = {
        "repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "length_penalty": 1.0,
        "no_repeat_ngram_size": 0, "encoder_no_repeat_ngram_size": 0, "min_length": 0,
        "min_new_tokens": None, "bad_words_ids": None, "sequence_bias": None,
        "suppress_tokens": None, "begin_suppress_tokens": None, "forced_bos_token_id": None,
        "forced_eos_token_id": None, "exponential_decay_length_penalty": None,
        "epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "typical_p": 1.0, "min_p": None,
        "num_beams": 1, "num_beam_groups": 1, "diversity_penalty": 0.0,
        "renormalize_logits": False, "guidance_scale": None, "watermarking_config": None,
        "num_return_sequences": 1,
    }
    if params.greedy:  # sampling knobs stay unset: greedy never reads them
        decoding: dict[str, Any] = {"do_sample": False}
    else:
        decoding = {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p,
                    "top_k": 0}
    cfg = GenerationConfig(**{**off, **decoding, **kept})
    cfg.max_new_tokens = params.max_new_tokens
    cfg.pad_token_id = pad_id
    cfg.eos_token_id = sorted(eos_ids)
    return cfg


@contextmanager
def own_generation_config(model: torch.nn.Module, config: GenerationConfig) -> Iterator[None]:
    """``config`` as the model's own generation config for the duration of one ``generate``
    (``generate`` fills every unset field from the model's; with this nothing is left to
    fill from it), restored afterwards."""
    target = cast(CausalLM, _base(model))
    before = target.generation_config
    target.generation_config = config
    try:
        yield
    finally:
        target.generation_config = before


def _base(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under a PEFT wrapper (whose ``forward`` takes ``**kwargs``)."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


def _forward_args(model: torch.nn.Module) -> set[str]:
    return set(inspect.signature(_base(model).forward).parameters)


class HFBackend:
    """``transformers`` ``generate`` with one prefill per prompt (see the module docstring).

    ``batch_size`` prompts per batch; ``sort_by_length`` batches prompts of similar length
    together (results come back in the order given). ``autocast`` (e.g. ``torch.bfloat16``)
    runs generation under CPU/GPU autocast.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tok: PreTrainedTokenizerBase,
        batch_size: int = 16,
        sort_by_length: bool = False,
        autocast: torch.dtype | None = None,
    ) -> None:
        self.model = model
        self.lm = cast(CausalLM, model)  # the same object, typed as the causal LM it is
        self.tok = tok
        self.batch_size = max(int(batch_size), 1)
        self.sort_by_length = sort_by_length
        self.autocast = autocast
        self.eos = _eos_ids(self.lm, tok)
        self._model_config = self.lm.generation_config  # only its cache implementation is used
        self.pad = tok.pad_token_id if tok.pad_token_id is not None else next(iter(self.eos))
        args = _forward_args(model)
        # transformers 5.x renamed the cache argument from past_key_values to cache.
        self._cache_arg = "cache" if "cache" in args else "past_key_values"
        self._logits_to_keep = "logits_to_keep" in args
        self._device = next(model.parameters()).device

    def generate(
        self,
        prompt_ids: Sequence[Sequence[int]],
        requests: Sequence[SamplingParams],
        progress: bool = False,
        desc: str = "generating",
    ) -> list[Completions]:
        """One :class:`Completions` per request; every prompt prefilled once per batch."""
        order = list(range(len(prompt_ids)))
        if self.sort_by_length:
            order.sort(key=lambda i: len(prompt_ids[i]))
        rows: list[list[list[list[int]] | None]] = [[None] * len(prompt_ids) for _ in requests]
        bar = tqdm(total=len(prompt_ids), desc=desc, disable=not progress, unit="prompt")
        autocast = (torch.autocast(self._device.type, dtype=self.autocast)
                    if self.autocast is not None else nullcontext())
        started = time.perf_counter()
        with eval_mode(self.model), torch.no_grad(), autocast:
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                outs = self._batch([prompt_ids[i] for i in chunk], requests)
                for r, out in enumerate(outs):
                    for i, ids in zip(chunk, out, strict=True):
                        rows[r][i] = ids
                bar.update(len(chunk))
        bar.close()
        made = sum(len(ids) for per_prompt in rows for p in per_prompt if p for ids in p)
        throughput.GENERATION.add(made, time.perf_counter() - started)
        results = []
        for per_prompt in rows:
            token_ids = [p for p in per_prompt if p is not None]
            texts = [[self._text(t) for t in p] for p in token_ids]
            results.append(Completions(texts=texts, token_ids=token_ids))
        return results

    def _text(self, ids: list[int]) -> str:
        """One completion's text (``decode`` returns a list only for a batch of sequences)."""
        text = self.tok.decode(ids, skip_special_tokens=True)
        if not isinstance(text, str):
            raise TypeError(f"decoding one sequence gave {type(text).__name__}, not str")
        return text.strip()

    def _prefill(self, ids: torch.Tensor, mask: torch.Tensor) -> Any:
        """The KV cache of every prompt but its last token (``generate`` feeds that token and
        samples from its logits), or None where the model cannot take a prefilled cache."""
        if ids.shape[1] < 2 or getattr(self.lm.generation_config,
                                       "cache_implementation", None) is not None:
            return None  # nothing to prefill, or generate must build its own (static) cache
        position_ids = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        kwargs: dict[str, Any] = {"input_ids": ids[:, :-1], "attention_mask": mask[:, :-1],
                                  "position_ids": position_ids[:, :-1], "use_cache": True}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        out = self.model(**kwargs)
        cache = getattr(out, "cache", None)
        if cache is None:
            cache = getattr(out, "past_key_values", None)
        if cache is None or not hasattr(cache, "batch_repeat_interleave"):
            return None
        return cache

    def _batch(
        self, chunk: list[Sequence[int]], requests: Sequence[SamplingParams]
    ) -> list[list[list[list[int]]]]:
        """Each request's completions for one batch of prompts, sharing one prefill."""
        ids, mask = left_pad(chunk, self.pad)
        ids, mask = ids.to(self._device), mask.to(self._device)
        cache = self._prefill(ids, mask)
        outs = []
        for r, params in enumerate(requests):
            n = 1 if params.greedy else params.n
            config = generation_config(params, self.eos, self.pad, self._model_config)
            kwargs: dict[str, Any] = {}
            if cache is None:
                run_ids, run_mask = ids, mask
                config.num_return_sequences = n
            else:
                # The last request may consume the prefilled cache; earlier ones get a copy.
                own = cache if r == len(requests) - 1 else copy.deepcopy(cache)
                if n > 1:
                    own.batch_repeat_interleave(n)
                run_ids, run_mask = ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0)
                kwargs[self._cache_arg] = own
            with own_generation_config(self.model, config):
                out = self.lm.generate(input_ids=run_ids, attention_mask=run_mask,
                                       generation_config=config, **kwargs)
            new = out[:, ids.shape[1] :].tolist()
            del out, kwargs
            outs.append([[_trim(new[i * n + j], self.eos, self.pad) for j in range(n)]
                         for i in range(len(chunk))])
        return outs


def backend(
    model: torch.nn.Module,
    tok: PreTrainedTokenizerBase,
    batch_size: int = 16,
    sort_by_length: bool = False,
    autocast: torch.dtype | None = None,
) -> GenerationBackend:
    """The generation backend for ``model`` (the one place another engine would be chosen)."""
    return HFBackend(model, tok, batch_size, sort_by_length, autocast)


def sample_many(
    model: torch.nn.Module,
    tok: PreTrainedTokenizerBase,
    prompt_ids: Sequence[Sequence[int]],
    requests: Sequence[SamplingParams],
    batch_size: int = 16,
    progress: bool = False,
    desc: str = "generating",
    sort_by_length: bool = False,
    autocast: torch.dtype | None = None,
) -> list[Completions]:
    """Several decoding requests over the same prompts (one prefill per prompt for all)."""
    engine = backend(model, tok, batch_size, sort_by_length, autocast)
    return engine.generate(prompt_ids, requests, progress, desc)


def sample(
    model: torch.nn.Module,
    tok: PreTrainedTokenizerBase,
    prompt_ids: Sequence[Sequence[int]],
    params: SamplingParams,
    batch_size: int = 16,
    progress: bool = False,
    desc: str = "generating",
    sort_by_length: bool = False,
    autocast: torch.dtype | None = None,
) -> Completions:
    """``params.n`` completions for every prompt, ``batch_size`` prompts per batch."""
    return sample_many(model, tok, prompt_ids, [params], batch_size, progress, desc,
                       sort_by_length, autocast)[0]
