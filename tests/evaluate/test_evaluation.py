"""Evaluation throughput changes keep results: batched reference NLL equals one example at a
time, and the shared-prefill, length-sorted sampling keeps each prompt's answers in place."""

from __future__ import annotations

import pytest
import torch
from helpers import tiny_configs
from omegaconf import OmegaConf

from polylora.data.example import Example
from polylora.data.formatting import PromptFormat, render_prompt
from polylora.evaluate.evaluation import evaluate, reference_nll
from polylora.model.generation import SamplingParams, sample
from polylora.model.loading import load_base_model

TINY, CPU, _ = tiny_configs()
FMT = PromptFormat()


@pytest.fixture(scope="module")
def tiny() -> tuple[object, object]:
    return load_base_model(TINY, CPU)


def _examples() -> list[Example]:
    prompts = ["a", "Name a word that starts with b.", "Give one word of letters",
               "Write a letter starting with the letter c and ending in d, answer only", "x y"]
    return [Example(id=f"e{i}", prompt=p, response=r) for i, (p, r) in
            enumerate(zip(prompts, ["ab", "bat", "cat is the answer", "cod", "a"], strict=True))]


def test_batched_reference_nll_equals_one_at_a_time(tiny: tuple[object, object]) -> None:
    model, tok = tiny
    examples = _examples()
    batched = reference_nll(model, tok, examples, FMT, 96, batch_size=4)
    single = [reference_nll(model, tok, [e], FMT, 96, batch_size=1)[0] for e in examples]
    assert batched == pytest.approx(single, rel=1e-5)
    assert len(set(batched)) == len(batched)  # distinct values: the order is checkable


def test_evaluate_keeps_each_prompts_generations_in_place(tiny: tuple[object, object]) -> None:
    """Length-sorted batches come back in subset order: each row's greedy answer is the
    prompt's own (computed alone), and every row has n samples."""
    model, tok = tiny
    examples = _examples()
    cfg = OmegaConf.create({
        "subset_size": len(examples), "metrics": ["test_loss", "distinct_1"],
        "n_samples": 3, "ks": [1], "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 4,
        "greedy": True, "batch_size": 2,
    })
    torch.manual_seed(0)
    report = evaluate(model, tok, examples, FMT, cfg, None, 96, progress=False)
    by_id = {e.id: e for e in examples}
    greedy = SamplingParams(max_new_tokens=4, greedy=True)
    for row in report.rows:
        ids = tok(render_prompt(by_id[row["id"]], tok, FMT), add_special_tokens=False)
        alone = sample(model, tok, [ids["input_ids"]], greedy).texts[0][0]
        assert row["greedy"] == alone
        assert len(row["samples"]) == 3
    assert [r["id"] for r in report.rows] == sorted(by_id)
    assert "eval/test_loss" in report.metrics
