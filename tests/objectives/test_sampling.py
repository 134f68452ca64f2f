"""Sampling a step's sets: prompt ids rendered once per training example (as the evaluation
renders them), N samples per prompt, and the distinct-answer fraction."""

from __future__ import annotations

import torch
from objectives.test_polychromic import context, lora_model

from polylora.data.formatting import render_prompt
from polylora.model.generation import SamplingParams
from polylora.objectives.sampling import PromptCache, distinct_fraction, sample_sets


def test_prompt_ids_are_the_rendered_prompt_computed_once() -> None:
    _, tok = lora_model()
    ctx = context(tok)
    cache = PromptCache()
    first = cache.lookup(ctx, [1, 0, 1])
    text = render_prompt(ctx.examples[1], tok, ctx.prompt_format)
    assert first[0] == tok(text, add_special_tokens=False)["input_ids"]
    assert first[0] is first[2]  # one entry per index
    assert cache.lookup(ctx, [1])[0] is first[0]
    cache.clear()
    assert cache.ids == {} and cache.lookup(ctx, [1])[0] == first[0]


def test_sample_sets_gives_n_samples_per_prompt() -> None:
    model, tok = lora_model()
    prompts = PromptCache().lookup(context(tok), [0, 1])
    torch.manual_seed(0)
    ids, texts = sample_sets(model, tok, prompts,
                             SamplingParams(n=3, temperature=1.0, top_p=1.0, max_new_tokens=4))
    assert [len(s) for s in ids] == [3, 3] and [len(t) for t in texts] == [3, 3]
    assert all(1 <= len(s) <= 4 for ss in ids for s in ss)
    assert model.training  # sampled in eval mode, the mode restored


def test_distinct_fraction() -> None:
    assert distinct_fraction(["a", "A ", "a"]) == 0.0
    assert distinct_fraction(["a", "b", "c"]) == 1.0
    assert distinct_fraction(["a", "b", "a"]) == 0.5
    assert distinct_fraction(["a"]) == 0.0
