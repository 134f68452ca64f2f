"""Batched sampling returns n completions per prompt, trimmed at the end token."""

from __future__ import annotations

import torch
from helpers import tiny_configs

from polylora.generation import SamplingParams, sample
from polylora.models import load_base_model

TINY, CPU, _ = tiny_configs()


def test_shapes_and_batching_match_one_by_one_greedy() -> None:
    model, tok = load_base_model(TINY, CPU)
    prompts = [tok("short")["input_ids"], tok("a much longer prompt here")["input_ids"]]
    out = sample(model, tok, prompts, SamplingParams(n=3, max_new_tokens=5), batch_size=2)
    assert len(out.texts) == 2 and all(len(t) == 3 for t in out.texts)
    assert all(len(ids) <= 5 for rows in out.token_ids for ids in rows)
    # Left padding must not change greedy answers: batched == one at a time.
    greedy = SamplingParams(max_new_tokens=6, greedy=True)
    batched = sample(model, tok, prompts, greedy, batch_size=2).token_ids
    single = [sample(model, tok, [p], greedy, batch_size=1).token_ids[0] for p in prompts]
    assert batched == single


def test_sampling_restores_training_mode() -> None:
    model, tok = load_base_model(TINY, CPU)
    model.train()
    torch.manual_seed(0)
    sample(model, tok, [tok("x")["input_ids"]], SamplingParams(n=2, max_new_tokens=2))
    assert model.training
