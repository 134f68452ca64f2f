"""Sampling: n completions per prompt, trimmed at the end token, each prompt prefilled once,
and distributed exactly as a plain ``generate(num_return_sequences=n)`` call."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import tiny_configs
from scipy.stats import chi2_contingency

from polylora.data.formatting import left_pad
from polylora.model.generation import HFBackend, SamplingParams, sample, sample_many
from polylora.model.loading import load_base_model, wrap_lora

TINY, CPU, LORA = tiny_configs()


@pytest.fixture(scope="module")
def tiny() -> tuple[object, object]:
    model, tok = load_base_model(TINY, CPU)
    return model, tok


def _prompts(tok: object) -> list[list[int]]:
    return [tok(t)["input_ids"] for t in  # type: ignore[operator]
            ("short", "a much longer prompt here", "the letter a", "x")]


def _plain_generate(model: object, tok: object, prompts: list[list[int]],
                    params: SamplingParams) -> list[list[int]]:
    """The pre-prefix-sharing path: N copies of every prompt through ``generate``."""
    ids, mask = left_pad(prompts, tok.pad_token_id)  # type: ignore[attr-defined]
    kwargs = ({"do_sample": False} if params.greedy else
              {"do_sample": True, "temperature": params.temperature, "top_p": params.top_p,
               "top_k": 0, "num_return_sequences": params.n})
    with torch.no_grad():
        out = model.generate(input_ids=ids, attention_mask=mask,  # type: ignore[attr-defined]
                             max_new_tokens=params.max_new_tokens,
                             pad_token_id=tok.pad_token_id,  # type: ignore[attr-defined]
                             eos_token_id=tok.eos_token_id, **kwargs)  # type: ignore[attr-defined]
    return out[:, ids.shape[1]:].tolist()


def _padded(rows: list[list[list[int]]], width: int, pad: int) -> list[list[int]]:
    return [r + [pad] * (width - len(r)) for p in rows for r in p]


def test_shapes_and_batching_match_one_by_one_greedy(tiny: tuple[object, object]) -> None:
    model, tok = tiny
    prompts = _prompts(tok)[:2]
    out = sample(model, tok, prompts, SamplingParams(n=3, max_new_tokens=5), batch_size=2)
    assert len(out.texts) == 2 and all(len(t) == 3 for t in out.texts)
    assert all(len(ids) <= 5 for rows in out.token_ids for ids in rows)
    # Left padding must not change greedy answers: batched == one at a time.
    greedy = SamplingParams(max_new_tokens=6, greedy=True)
    batched = sample(model, tok, prompts, greedy, batch_size=2).token_ids
    single = [sample(model, tok, [p], greedy, batch_size=1).token_ids[0] for p in prompts]
    assert batched == single


def test_seeded_samples_equal_plain_generate_with_n_copies(tiny: tuple[object, object]) -> None:
    """Prefix sharing draws the same random numbers in the same order: same seed, same
    samples as handing ``generate`` N copies of each prompt (one-token prompt included)."""
    model, tok = tiny
    prompts = _prompts(tok)
    params = SamplingParams(n=4, max_new_tokens=6, temperature=1.3, top_p=0.9)
    torch.manual_seed(7)
    plain = _plain_generate(model, tok, prompts, params)
    torch.manual_seed(7)
    ours = sample(model, tok, prompts, params, batch_size=len(prompts)).token_ids
    width = len(plain[0])
    trimmed_plain = [r[: len(o)] for r, o in zip(plain, [x for p in ours for x in p],
                                                   strict=True)]
    assert [x for p in ours for x in p] == trimmed_plain
    assert len(_padded(ours, width, tok.pad_token_id)) == len(plain)  # type: ignore[attr-defined]


def test_samples_and_greedy_share_one_prefill(tiny: tuple[object, object]) -> None:
    """``sample_many`` returns what separate calls return, and runs each prompt's tokens
    through the model once per batch, not once per sample."""
    model, tok = tiny
    prompts = _prompts(tok)[:3]
    sampled = SamplingParams(n=5, max_new_tokens=4)
    greedy = SamplingParams(max_new_tokens=4, greedy=True)
    torch.manual_seed(3)
    both = sample_many(model, tok, prompts, [sampled, greedy], batch_size=3)
    torch.manual_seed(3)
    alone = sample(model, tok, prompts, sampled, batch_size=3)
    assert both[0].token_ids == alone.token_ids
    assert both[1].token_ids == sample(model, tok, prompts, greedy, batch_size=3).token_ids

    seen: list[tuple[int, int]] = []
    hook = model.get_input_embeddings().register_forward_hook(  # type: ignore[attr-defined]
        lambda _m, args, _out: seen.append(tuple(args[0].shape)))
    try:
        sample_many(model, tok, prompts, [sampled, greedy], batch_size=3)
    finally:
        hook.remove()
    width = max(len(p) for p in prompts)
    multi_token = [s for s in seen if s[1] > 1]
    assert multi_token == [(3, width - 1)]  # one prefill of 3 prompts, not 3 × (5 + 1) rows


def test_length_sorted_batches_keep_order_and_distribution(
    tiny: tuple[object, object],
) -> None:
    """Sorting prompts by length changes which random numbers each row draws (so seeded
    equality cannot hold), not the distribution: greedy answers are identical and the
    first sampled token's frequencies agree (chi-square, fixed seeds)."""
    model, tok = tiny
    prompts = _prompts(tok)
    greedy = SamplingParams(max_new_tokens=5, greedy=True)
    assert (sample(model, tok, prompts, greedy, batch_size=2, sort_by_length=True).token_ids
            == sample(model, tok, prompts, greedy, batch_size=2).token_ids)
    params = SamplingParams(n=300, max_new_tokens=1, temperature=2.0)
    torch.manual_seed(0)
    a = sample(model, tok, prompts, params, batch_size=2, sort_by_length=True).token_ids
    torch.manual_seed(1)
    b = sample(model, tok, prompts, params, batch_size=2).token_ids
    for pa, pb in zip(a, b, strict=True):  # per prompt: same distribution of first tokens
        first = [[r[0] if r else -1 for r in rows] for rows in (pa, pb)]  # -1: pad (empty)
        vocab = sorted(set(first[0]) | set(first[1]))
        table = np.array([[f.count(v) for v in vocab] for f in first])
        assert chi2_contingency(table).pvalue > 0.001


def test_peft_model_and_no_prefill_fallback(tiny: tuple[object, object]) -> None:
    """A LoRA-wrapped model takes the prefilled cache too; one-token prompts (nothing to
    prefill) go through plain ``generate`` and still return n completions each."""
    _, tok = tiny
    base, _ = load_base_model(TINY, CPU)
    model = wrap_lora(base, LORA, CPU)
    prompts = _prompts(tok)
    params = SamplingParams(n=3, max_new_tokens=4)
    torch.manual_seed(5)
    plain = _plain_generate(model, tok, prompts, params)
    torch.manual_seed(5)
    ours = [x for p in sample(model, tok, prompts, params, batch_size=4).token_ids for x in p]
    assert ours == [r[: len(o)] for r, o in zip(plain, ours, strict=True)]
    one = [tok("x")["input_ids"][:1]] * 2  # type: ignore[operator]
    engine = HFBackend(model, tok, batch_size=2)
    out = engine.generate(one, [params])[0]
    assert [len(rows) for rows in out.token_ids] == [3, 3]


def test_sampling_restores_training_mode(tiny: tuple[object, object]) -> None:
    model, tok = tiny
    model.train()  # type: ignore[attr-defined]
    torch.manual_seed(0)
    sample(model, tok, [tok("x")["input_ids"]], SamplingParams(n=2, max_new_tokens=2))
    assert model.training  # type: ignore[attr-defined]


def test_a_models_own_generation_config_does_not_reshape_sampling(
    tiny: tuple[object, object],
) -> None:
    """A model that ships a repetition penalty, top-k and min-p (as Qwen2.5-Instruct ships a
    repetition penalty) samples exactly as one that ships none: the distribution sampled is
    the one the policy-gradient log-probs assume, softmax(logits / T)."""
    from transformers import GenerationConfig

    from polylora.objectives.logprobs import prefix_token_logprobs

    model, tok = tiny
    prompts = _prompts(tok)
    params = SamplingParams(n=3, temperature=0.9, max_new_tokens=6)
    greedy = SamplingParams(max_new_tokens=6, greedy=True)
    shipped = model.generation_config  # type: ignore[attr-defined]

    def run() -> tuple[list[list[list[int]]], list[list[list[int]]]]:
        torch.manual_seed(7)
        done = sample_many(model, tok, prompts, [params, greedy], batch_size=4)  # type: ignore[arg-type]
        return done[0].token_ids, done[1].token_ids

    clean = run()
    polluted = GenerationConfig(repetition_penalty=1.3, top_k=2, min_p=0.9,
                                no_repeat_ngram_size=1)
    model.generation_config = polluted  # type: ignore[attr-defined]
    try:
        # The pollution bites when inherited: a generate call that leaves top-k, min-p and
        # the penalty to the model's config samples differently ...
        ids, mask = left_pad(prompts, tok.pad_token_id)  # type: ignore[attr-defined]
        torch.manual_seed(7)
        with torch.no_grad():
            inherited = model.generate(  # type: ignore[attr-defined]
                input_ids=ids, attention_mask=mask, do_sample=True, temperature=0.9,
                max_new_tokens=6, num_return_sequences=3, pad_token_id=tok.pad_token_id,  # type: ignore[attr-defined]
                eos_token_id=tok.eos_token_id)[:, ids.shape[1]:].tolist()  # type: ignore[attr-defined]
        assert inherited != _padded(clean[0], 6, tok.pad_token_id)  # type: ignore[attr-defined]
        # ... but polylora's samplers decode with their own settings alone.
        assert run() == clean
        assert model.generation_config is polluted  # type: ignore[attr-defined]
    finally:
        model.generation_config = shipped  # type: ignore[attr-defined]
    # Through a LoRA wrapper (the training samplers' path) too.
    base, _ = load_base_model(TINY, CPU)
    peft = wrap_lora(base, LORA, CPU)
    torch.manual_seed(7)
    before = sample(peft, tok, prompts, params).token_ids  # type: ignore[arg-type]
    peft.get_base_model().generation_config = polluted
    try:
        torch.manual_seed(7)
        assert sample(peft, tok, prompts, params).token_ids == before  # type: ignore[arg-type]
        # The log-probs of those samples (what the PG term weighs) are the same numbers
        # whatever the model ships.
        pad = tok.pad_token_id  # type: ignore[attr-defined]
        with torch.no_grad():
            shipped_logp = prefix_token_logprobs(peft, prompts, before, pad, 0.9)
            peft.get_base_model().generation_config = shipped
            clean_logp = prefix_token_logprobs(peft, prompts, before, pad, 0.9)
        assert shipped_logp is not None and clean_logp is not None
        assert torch.equal(shipped_logp[0], clean_logp[0])
    finally:
        peft.get_base_model().generation_config = shipped
