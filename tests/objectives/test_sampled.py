"""The sampled-set core: log-probs of the distribution actually sampled (temperature 0.7),
pure RL (ce_weight 0), the no-signal warning, and the Trainer's step driving generate_every."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
from objectives.test_polychromic import context, fixed_samples, lora_model, make_batch

from polylora.data.words import WordChecker
from polylora.objectives.grpo import GRPOObjective
from polylora.objectives.logprobs import pack
from polylora.objectives.monitors import NoSignalMonitor
from polylora.objectives.polychromic import PolychromicObjective


def test_pg_logprobs_are_log_softmax_of_logits_over_temperature() -> None:
    model, tok = lora_model()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    obj = PolychromicObjective(diversity_metric="distinct", quality="none", temperature=0.7,
                               max_new_tokens=6, n_generations=3)
    obj.bind(context(tok))
    prompts = obj.prompt_ids([0, 1])
    torch.manual_seed(0)
    ids, _ = obj.generate(model, prompts)  # sampled at T = 0.7 by generation.sample
    adv = [[1.0, -0.5, 0.25], [0.5, 0.0, -1.0]]
    got = obj.pg_terms(model, prompts, ids, adv).pg_loss
    expected = torch.zeros(())
    model.eval()
    with torch.no_grad():
        for prompt, samples, aa in zip(prompts, ids, adv, strict=True):
            for sample, a in zip(samples, aa, strict=True):
                logits = model(input_ids=torch.tensor([prompt + sample])).logits[0]
                logp = torch.log_softmax(logits[len(prompt) - 1 : -1] / 0.7, dim=-1)
                expected -= a * logp.gather(-1, torch.tensor(sample)[:, None]).sum()
    model.train()
    expected /= 6 * obj.max_new_tokens
    torch.testing.assert_close(got.detach(), expected, atol=1e-5, rtol=1e-5)
    # ... and not of the raw logits: per token, T = 1 gives clearly different log-probs.
    packed = pack(prompts, ids, tok.pad_token_id, torch.device("cpu"))
    with torch.no_grad():
        at_07, at_1 = packed.token_logprobs(model, 0.7), packed.token_logprobs(model, 1.0)
    assert float((at_07 - at_1).abs().max()) > 0.05


def test_pure_rl_without_signal_still_backpropagates_zero() -> None:
    model, tok = lora_model()
    obj = GRPOObjective(ce_weight=0.0, n_generations=3)
    obj.bind(context(tok, WordChecker()))
    obj.generate = lambda m, p: fixed_samples(tok, len(p))  # type: ignore[method-assign]
    out = obj.compute_loss(model, make_batch(obj.context), None, 1)
    assert float(out.loss) == 0.0 and out.metrics["train/no_signal"] == 1.0
    out.loss.backward()  # what the Trainer does: must not fail
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is None or float(g.abs().sum()) == 0.0 for g in grads)


def test_no_signal_warning_after_k_silent_generation_steps(caplog) -> None:
    mon = NoSignalMonitor(patience=3)
    assert mon.observe(0, False) == [] and mon.observe(1, False) == []
    fired = mon.observe(2, False)
    assert [w.kind for w in fired] == ["no_signal"]
    assert "model.adapter=runs:/<run_id>/adapter" in fired[0].message
    assert mon.observe(3, False) == []  # once per episode
    assert mon.observe(4, True) == [] and mon.observe(5, False) == []  # re-armed

    model, tok = lora_model()
    obj = GRPOObjective(n_generations=3, no_signal_patience=2)  # every sample wrong
    obj.bind(context(tok, WordChecker()))
    obj.generate = lambda m, p: fixed_samples(tok, len(p))  # type: ignore[method-assign]
    batch = make_batch(obj.context)
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            obj.compute_loss(model, batch, None, 1)
    assert [w.kind for w in obj.warnings] == ["no_signal"]
    assert "every advantage was 0 for 2 generation steps" in caplog.text


def test_trainer_step_drives_generate_every() -> None:
    """With the Trainer's step given (as after train.resume at step 3), generation follows
    that step, not the object's own call count."""
    model, tok = lora_model()
    obj = PolychromicObjective(diversity_metric="distinct", quality="none", generate_every=2)
    obj.bind(context(tok))
    calls: list[int] = []
    current: list[int] = []

    def fake(m, p):
        calls.append(current[-1])
        return fixed_samples(tok, len(p))

    obj.generate = fake  # type: ignore[method-assign]
    batch = make_batch(obj.context)
    for step in (3, 3, 4, 4, 5, 6):  # grad_accum 2 on steps 3, 4; then 1 micro-batch each
        current.append(step)
        obj.compute_loss(model, batch, None, 2 if step < 5 else 1, step=step)
    assert calls == [4, 4, 6]


@pytest.mark.parametrize("norm", ["group_std", "none"])
def test_default_scaling_makes_lambda_relative(norm: str) -> None:
    """group_std advantages are O(1) whatever the set scores' units; raw ones are not."""
    model, tok = lora_model()
    obj = PolychromicObjective(diversity_metric="distinct", quality="none", advantage_norm=norm)
    obj.bind(context(tok))
    obj.generate = lambda m, p: fixed_samples(tok, len(p))  # type: ignore[method-assign]
    out = obj.compute_loss(model, make_batch(obj.context), None, 1)
    if norm == "group_std":
        assert 0.5 < out.metrics["train/advantage_abs"] < 1.5
    else:
        assert out.metrics["train/advantage_abs"] < 0.2


def test_prompt_once_pass_equals_one_row_per_sample() -> None:
    """The PG pass runs each prompt once (KV cache shared by its samples): same log-probs and
    LoRA gradients as teacher-forcing every [prompt | sample] row, at T = 0.7."""
    from objectives.test_polychromic import lora_grads

    from polylora.objectives.logprobs import prefix_token_logprobs

    model, tok = lora_model()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    obj = PolychromicObjective(diversity_metric="distinct", quality="none", temperature=0.7)
    obj.bind(context(tok))
    prompts = obj.prompt_ids([0, 2, 3])
    ids, _ = fixed_samples(tok, 3, ["the cat", "a", "the dog sat on the mat"])
    ids[1][1] = []  # an empty sample: no tokens, log-prob 0
    model.eval()
    shared = prefix_token_logprobs(model, prompts, ids, tok.pad_token_id, 0.7)
    assert shared is not None
    packed = pack(prompts, ids, tok.pad_token_id, torch.device("cpu"))
    rows = packed.token_logprobs(model, 0.7)
    torch.testing.assert_close(shared[1], packed.target_mask)
    torch.testing.assert_close(shared[0], rows, atol=1e-5, rtol=1e-5)
    weights = torch.randn(rows.shape[0])
    g_shared = lora_grads(model, (weights * shared[0].sum(1)).sum())
    g_rows = lora_grads(model, (weights * rows.sum(1)).sum())
    for k in g_rows:
        torch.testing.assert_close(g_shared[k], g_rows[k], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "settings",
    [
        {},  # CE + PG: every micro-batch backpropagated inside the objective
        {"kl_weight": 0.2, "kl_estimator": "k1", "pg_normalizer": "sample_mean"},
        {"ce_weight": 0.0},  # pure RL: the last micro-batch is left for the Trainer
    ],
)
def test_micro_batched_pg_backward_equals_one_pass(settings: dict[str, Any]) -> None:
    """With the Trainer's backward and micro_batch=2, the step runs 2 prompts at a time, each
    micro-batch's pass backpropagated at once: the returned loss value and the LoRA gradients
    (inside + returned backward) equal the whole-batch pass's, with gradient accumulation 2
    and an uneven last micro-batch (dropout off, so CE's masks are not drawn per
    micro-batch)."""
    model, tok = lora_model()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    model.eval()  # no dropout: the CE micro-batches would draw other masks
    results = []
    for micro in (False, True):
        obj = PolychromicObjective(diversity_metric="distinct", quality="none",
                                   temperature=0.8, micro_batch=2, **settings)
        obj.bind(context(tok))
        obj.generate = lambda m, p: fixed_samples(  # type: ignore[method-assign]
            tok, len(p), ["the cat", "a dog", "the dog sat on the mat"])
        calls: list[float] = []
        backward = ((lambda t, c=calls: (c.append(float(t.detach())), t.backward()))
                    if micro else None)
        model.zero_grad(set_to_none=True)
        torch.manual_seed(3)
        out = obj.compute_loss(model, make_batch(obj.context, (0, 1, 2)), None, 2,
                               backward=backward)
        out.loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()
                 if p.requires_grad}
        results.append((float(out.loss.detach()), out.metrics, grads, calls))
    (loss_a, metrics_a, grads_a, _), (loss_b, metrics_b, grads_b, calls) = results
    # 2 micro-batches of one pass each (CE and sample rows together): the first
    # backpropagated inside, the last returned to the Trainer
    assert len(calls) == 1
    assert loss_b == pytest.approx(loss_a, rel=1e-5, abs=1e-5)
    for key in ("train/pg_loss", "train/combined_loss", "train/kl", "train/kl_loss"):
        if key in metrics_a:
            assert metrics_b[key] == pytest.approx(metrics_a[key], rel=1e-4, abs=1e-5), key
    assert any(float(g.abs().sum()) > 0 for g in grads_a.values())
    for k in grads_a:
        torch.testing.assert_close(grads_b[k], grads_a[k], atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize(("objective", "expected"), [
    (GRPOObjective(n_generations=4, ce_weight=0.0), 0.0),
    (PolychromicObjective(n_generations=4, ce_weight=0.0, diversity_metric="distinct",
                          quality="checker"), 1.0),
])
def test_a_step_logs_the_share_of_groups_that_differ_from_pass1_rl(
        objective: Any, expected: float) -> None:
    """Each prompt's group holds its right answer twice and two different wrong ones: GRPO
    moves like itself; polychromic, rewarding the second different answer, does not."""
    model, tok = lora_model()
    ctx = context(tok, WordChecker())
    objective.bind(ctx)
    texts = [[ctx.examples[i].response] * 2 + ["zzzz", "qqqq"] for i in (0, 1)]

    def fake(_model: torch.nn.Module, prompts: list[list[int]]):
        ids = [[tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in ts]
               for ts in texts]
        return ids, texts

    objective.generate = fake
    out = objective.compute_loss(model, make_batch(ctx), None, 1)
    assert out.metrics["train/sample_quality"] == 0.5
    assert out.metrics["train/differs_from_pass1"] == expected
