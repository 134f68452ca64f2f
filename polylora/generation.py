"""Batched sampling: n completions for each of many prompts in few ``generate`` calls.

Used by evaluation (n samples + one greedy answer per prompt) and by the polychromic objective
(N samples per training prompt). Prompts are left-padded so a batch of prompts with
``num_return_sequences=n`` is one call.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from polylora.data.formatting import left_pad


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


def _eos_ids(model: torch.nn.Module, tok: PreTrainedTokenizerBase) -> set[int]:
    ids = model.generation_config.eos_token_id
    found = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tok.eos_token_id is not None:
        found.add(tok.eos_token_id)
    return found


def sample(
    model: torch.nn.Module,
    tok: PreTrainedTokenizerBase,
    prompt_ids: Sequence[Sequence[int]],
    params: SamplingParams,
    batch_size: int = 16,
    progress: bool = False,
    desc: str = "generating",
) -> Completions:
    """``params.n`` completions for every prompt, ``batch_size`` prompts per generate call."""
    device = next(model.parameters()).device
    eos = _eos_ids(model, tok)
    pad = tok.pad_token_id if tok.pad_token_id is not None else next(iter(eos))
    texts: list[list[str]] = []
    token_ids: list[list[list[int]]] = []
    n = 1 if params.greedy else params.n
    kwargs: dict[str, object] = {
        "max_new_tokens": params.max_new_tokens,
        "pad_token_id": pad,
        "eos_token_id": sorted(eos),
    }
    if params.greedy:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    else:
        kwargs.update(
            do_sample=True,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=0,
            num_return_sequences=n,
        )
    starts = range(0, len(prompt_ids), batch_size)
    bar = tqdm(total=len(prompt_ids), desc=desc, disable=not progress, unit="prompt")
    with eval_mode(model), torch.no_grad():
        for start in starts:
            chunk = prompt_ids[start : start + batch_size]
            ids, mask = left_pad(chunk, pad)
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
            new = out[:, ids.shape[1] :].tolist()
            for i in range(len(chunk)):
                rows = [_trim(new[i * n + j], eos, pad) for j in range(n)]
                token_ids.append(rows)
                texts.append([tok.decode(r, skip_special_tokens=True).strip() for r in rows])
            bar.update(len(chunk))
    bar.close()
    return Completions(texts=texts, token_ids=token_ids)
