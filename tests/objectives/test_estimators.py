"""Each RL objective's gradient estimator, averaged over many sampled batches, matches the exact
gradient of its stated objective, computed by enumerating every answer of a tiny policy whose
answer is one token out of 8 (sampled through the real ``generate`` at temperature 0.7).

Stated objectives (per prompt; π = softmax(logits / T) of the one answer token; R = B·n samples
per micro-batch; pg_normalizer=constant with max_new_tokens=1; advantage_norm=none so that the
scale is known; ce_weight 0):

- grpo:   E[∇ loss] = −λ (n − 1)/n · ∇ J,     J = Σ_y π(y) r(y)   (the group-mean baseline
          includes the sample itself, hence (n − 1)/n)
- passk:  E[∇ loss] = −λ / k · ∇ pass@k,       pass@k = 1 − (1 − Σ_correct π)^k   (PKPO)
- polychromic (marginal, n = 3: subsets of size 2 only):
          E[∇ loss] = −λ / 6 · ∇ F₂,            F₂ = Σ_{a,b} π(a) π(b) f({a, b})
- KL (k1 and k2, λ = 0, β = 1):  E[∇ loss] = ∇ KL(π_θ ‖ π_base)

Tolerance: M independent batches give M estimates g_m; with ḡ their mean and SE_j the standard
error of coordinate j, E‖ḡ − g*‖² = Σ_j SE_j², so ‖ḡ − g*‖ ≤ 4·√(Σ SE_j²) holds unless the
estimator is biased (a 4-sigma bound; the seed is fixed, so the test is deterministic). The
test also checks that this bound is tight enough to matter: it is below 35% of ‖g*‖ (so a
wrong scale factor such as a missing (n − 1)/n, n/k or 1/T would fail), and for
grpo below the distance between g* and the gradient with the temperature ignored.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from polylora.data.checking import CheckResult
from polylora.data.example import Example
from polylora.data.formatting import PromptFormat
from polylora.metrics.diversity import set_diversity
from polylora.objectives.base import ObjectiveContext
from polylora.objectives.grpo import GRPOObjective
from polylora.objectives.passk import PassKObjective
from polylora.objectives.polychromic import PolychromicObjective

V, EOS = 8, 7
PROMPT = [1, 2, 3]
CORRECT = {"w1", "w2", "w5"}
T = 0.7
B, M = 300, 10  # prompts per batch, batches


class OneTokenTokenizer:
    """Token i decodes to "w<i>"; the end token (also padding) decodes to ""."""

    pad_token_id = EOS
    eos_token_id = EOS

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return " ".join(f"w{i}" for i in ids if not (skip_special_tokens and i == EOS))


def checker(example: Example, answer: str) -> CheckResult:
    return CheckResult(correct=answer in CORRECT)


def tiny_policy() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=16,
                      tie_word_embeddings=False, eos_token_id=EOS, pad_token_id=EOS,
                      bos_token_id=0)
    base = LlamaForCausalLM(cfg)
    with torch.no_grad():
        base.lm_head.weight.mul_(8.0)  # a non-uniform answer distribution
    lora = LoraConfig(r=2, lora_alpha=4, lora_dropout=0.0, init_lora_weights=False,
                      target_modules=["q_proj", "v_proj", "o_proj", "down_proj"])
    model = get_peft_model(base, lora)
    with torch.no_grad():  # an adapter that moves the policy away from the base (KL > 0)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.generation_config.eos_token_id = EOS
    model.generation_config.pad_token_id = EOS
    model.train()
    return model


def bind(obj: Any) -> Any:
    examples = [Example(id=str(i), prompt="p", response="w1") for i in range(B)]
    obj.bind(ObjectiveContext(tokenizer=OneTokenTokenizer(), examples=examples,  # type: ignore[arg-type]
                              prompt_format=PromptFormat(), checker=checker))
    obj.prompt_cache.ids.update({i: PROMPT for i in range(B)})
    return obj


def trainable(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def answer_probs(model: torch.nn.Module, temperature: float, base: bool = False) -> torch.Tensor:
    model.eval()
    ids = torch.tensor([PROMPT])
    if base:
        with model.disable_adapter():
            logits = model(input_ids=ids).logits[0, -1]
    else:
        logits = model(input_ids=ids).logits[0, -1]
    model.train()
    return torch.softmax(logits / temperature, dim=-1)


def exact_grad(model: torch.nn.Module, value: torch.Tensor) -> torch.Tensor:
    return torch.cat([g.flatten() for g in torch.autograd.grad(value, trainable(model))])


def estimates(model: torch.nn.Module, obj: Any) -> torch.Tensor:
    """M estimates of ∇ loss, one per batch of B prompts (same prompt), shape (M, dim)."""
    torch.manual_seed(1234)
    batch = {"example_index": torch.arange(B)}
    out = []
    for _ in range(M):
        model.zero_grad(set_to_none=True)
        obj.compute_loss(model, batch, None, 1).loss.backward()
        out.append(torch.cat([p.grad.flatten() for p in trainable(model)]))
    return torch.stack(out)


def assert_unbiased(samples: torch.Tensor, expected: torch.Tensor) -> float:
    mean = samples.mean(0)
    se = (samples.var(0, unbiased=True) / samples.shape[0]).sum().sqrt()
    bound = 4 * float(se)
    print(f"4 SE / |exact| = {bound / float(expected.norm()):.3f}")
    assert bound < 0.35 * float(expected.norm()), "too noisy for the test to mean anything"
    err = float((mean - expected).norm())
    assert err <= bound, f"|mean - exact| = {err:.4g} > 4 SE = {bound:.4g}"
    return bound


def values() -> torch.Tensor:
    return torch.tensor([1.0 if f"w{i}" in CORRECT else 0.0 for i in range(V)])


def test_grpo_estimator_matches_exact_gradient_at_temperature_0_7() -> None:
    model = tiny_policy()
    n = 4
    obj = bind(GRPOObjective(pg_weight=1.0, ce_weight=0.0, n_generations=n, temperature=T,
                             max_new_tokens=1, advantage_norm="none"))
    exact = -(n - 1) / n * exact_grad(model, (answer_probs(model, T) * values()).sum())
    bound = assert_unbiased(estimates(model, obj), exact)
    # Power: ignoring the temperature (raw logits) would be detected.
    wrong = -(n - 1) / n * exact_grad(model, (answer_probs(model, 1.0) * values()).sum())
    assert float((wrong - exact).norm()) > bound


def test_passk_estimator_matches_exact_gradient_of_pass_at_k() -> None:
    model = tiny_policy()
    n, k = 4, 2
    obj = bind(PassKObjective(k=k, pg_weight=1.0, ce_weight=0.0, n_generations=n,
                              temperature=T, max_new_tokens=1, advantage_norm="none"))
    p_correct = (answer_probs(model, T) * values()).sum()
    exact = -1 / k * exact_grad(model, 1 - (1 - p_correct) ** k)
    assert_unbiased(estimates(model, obj), exact)


def test_polychromic_marginal_estimator_matches_exact_gradient() -> None:
    model = tiny_policy()
    obj = bind(PolychromicObjective(pg_weight=1.0, ce_weight=0.0, n_generations=3,
                                    diversity_metric="distinct", quality="none",
                                    temperature=T, max_new_tokens=1, advantage_norm="none"))
    tok = OneTokenTokenizer()
    f = torch.zeros(V, V)
    for a, b in itertools.product(range(V), repeat=2):
        f[a, b] = set_diversity([tok.decode([a]), tok.decode([b])], "distinct", None)
    pi = answer_probs(model, T)
    exact = -1 / 6 * exact_grad(model, pi @ f @ pi)
    assert_unbiased(estimates(model, obj), exact)


@pytest.mark.parametrize("estimator", ["k1", "k2"])
def test_kl_estimator_gradient_is_the_forward_kl_gradient(estimator: str) -> None:
    model = tiny_policy()
    obj = bind(GRPOObjective(pg_weight=0.0, ce_weight=0.0, kl_weight=1.0, kl_estimator=estimator,
                             n_generations=4, temperature=T, max_new_tokens=1))
    pi = answer_probs(model, T)
    with torch.no_grad():
        ref = answer_probs(model, T, base=True)
    kl = (pi * (pi.log() - ref.log())).sum()
    assert float(kl.detach()) > 0.05
    assert_unbiased(estimates(model, obj), exact_grad(model, kl))
    # The logged value is a KL estimate too (k1: unbiased; k2: ½ E[r²], close for small KL).
    torch.manual_seed(0)
    out = obj.compute_loss(model, {"example_index": torch.arange(B)}, None, 1)
    if estimator == "k1":
        assert out.metrics["train/kl"] == pytest.approx(float(kl), rel=0.25)
    assert out.metrics["train/kl"] > 0
