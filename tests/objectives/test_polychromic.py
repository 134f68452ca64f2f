"""The polychromic objective: λ = 0 is CE exactly, λ > 0 changes the LoRA gradient in the
advertised direction, scoring uses the shared metrics, bad config fails before any model
loads, and the smoke experiment trains end to end with its metrics in MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import torch
from helpers import REPO, runs_of, tiny_configs
from omegaconf import OmegaConf

from polylora.data.checking import CheckResult
from polylora.data.example import Example
from polylora.data.formatting import PaddingCollator, PromptFormat, encode_example
from polylora.data.words import WordChecker, WordTask
from polylora.errors import ConfigError
from polylora.model.loading import load_base_model, wrap_lora
from polylora.objectives.base import ObjectiveContext
from polylora.objectives.ce import CrossEntropyObjective, cross_entropy_loss
from polylora.objectives.logprobs import pack
from polylora.objectives.polychromic import (
    MonitorWarning,
    PolychromicObjective,
    TrainingMonitor,
    emit_warning,
)

TINY, CPU, LORA = tiny_configs()
MAX_LENGTH = 48
# Fixed samples per prompt: pairs overlap differently, so the marginal advantages are not 0.
FIXED = ["the cat", "the dog", "a bird"]


# --------------------------------------------------------------------------- fixtures


def lora_model() -> tuple[torch.nn.Module, Any]:
    base, tok = load_base_model(TINY, CPU)
    torch.manual_seed(0)
    model = wrap_lora(base, LORA, CPU)
    model.train()
    return model, tok


def context(tok: Any, checker: Any = None) -> ObjectiveContext:
    examples = WordTask(n_examples=4, seed=0).load()
    return ObjectiveContext(
        tokenizer=tok,
        examples=examples,
        prompt_format=PromptFormat(),
        checker=checker,
        max_length=MAX_LENGTH,
    )


def make_batch(ctx: ObjectiveContext, indices: Sequence[int] = (0, 1)) -> dict[str, torch.Tensor]:
    feats = [
        encode_example(ctx.examples[i], ctx.tokenizer, ctx.prompt_format, ctx.max_length)
        for i in indices
    ]
    batch = PaddingCollator(ctx.tokenizer.pad_token_id)(feats)
    batch["example_index"] = torch.tensor(list(indices))
    return batch


def fixed_samples(tok: Any, n_prompts: int, texts: Sequence[str] = FIXED):
    ids = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]
    return [list(ids) for _ in range(n_prompts)], [list(texts) for _ in range(n_prompts)]


def objective(ctx: ObjectiveContext, **kwargs: Any) -> PolychromicObjective:
    settings = {"diversity_metric": "distinct", "quality": "none", **kwargs}
    obj = PolychromicObjective(**settings)
    obj.bind(ctx)
    return obj


def with_fixed_samples(obj: PolychromicObjective, tok: Any) -> list[int]:
    """Replace the sampler by fixed samples; returns a list counting the calls."""
    calls: list[int] = []

    def fake(model: torch.nn.Module, prompts: list[list[int]]):
        calls.append(len(prompts))
        return fixed_samples(tok, len(prompts))

    obj.generate = fake  # type: ignore[method-assign]
    return calls


def lora_grads(model: torch.nn.Module, loss: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


class CountingEmbedder:
    """Bag-of-words unit vectors; records every encode call (tests one call per step)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split() or [""]:
                out[i, hash(word) % 64] += 1.0
            out[i] /= np.linalg.norm(out[i])
        return out


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"n_generations": 1}, "objective.n_generations must be between 2 and 8, got 1"),
        ({"n_generations": 9}, "objective.n_generations must be between 2 and 8, got 9"),
        ({"pg_weight": -0.1}, "objective.pg_weight must be a number >= 0"),
        ({"diversity_metric": "bleu"}, "objective.diversity_metric='bleu' is unknown"),
        ({"quality": "judge"}, "objective.quality='judge' is unknown"),
        ({"set_score": "product"}, "objective.set_score='product' is unknown"),
        ({"advantage": "shapley"}, "objective.advantage='shapley' is unknown"),
        ({"kl_weight": -1}, "objective.kl_weight must be a number >= 0"),
        ({"temperature": 0}, "objective.temperature must be > 0"),
        ({"top_p": 1.5}, "objective.top_p must be in (0, 1]"),
        ({"max_new_tokens": 0}, "objective.max_new_tokens must be an integer >= 1"),
        ({"generate_every": 0}, "objective.generate_every must be an integer >= 1"),
        ({"collapse_floor": 2}, "objective.collapse_floor must be in [0, 1]"),
    ],
)
def test_bad_config_is_one_clear_line(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        PolychromicObjective(**kwargs)
    assert needle in str(info.value) and "\n" not in str(info.value)


def test_checker_quality_needs_a_checker() -> None:
    obj = PolychromicObjective(quality="checker")
    obj.check_data(has_checker=True)
    with pytest.raises(ConfigError, match=r"objective\.quality=reference_similarity") as info:
        obj.check_data(has_checker=False)
    assert "data=words has a checker" in str(info.value)
    PolychromicObjective(quality="reference_similarity").check_data(has_checker=False)


def test_prepare_rejects_checker_quality_on_jsonl_data(compose_cfg, tmp_path: Path) -> None:
    from polylora.run.pipeline import prepare

    data = tmp_path / "d.jsonl"
    data.write_text("".join(f'{{"prompt": "p{i}", "response": "r{i}"}}\n' for i in range(10)))
    common = [
        "+experiment=smoke",
        "objective=polychromic",
        "data=jsonl",
        f"data.path={data}",
        "eval.metrics=[loss]",
    ]  # the smoke's checker metrics would fail first
    cfg = compose_cfg(common)
    with pytest.raises(ConfigError, match=r"objective\.quality=checker needs a task checker"):
        prepare(cfg)
    ok = compose_cfg([*common, "objective.quality=reference_similarity"])
    assert isinstance(prepare(ok).objective, PolychromicObjective)


def test_cli_bad_n_generations_is_one_line_exit_2(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "polylora",
            "+experiment=smoke",
            "objective=polychromic",
            "objective.n_generations=1",
            f"tracking.uri=sqlite:///{tmp_path / 'm.db'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("polylora: error:")]
    assert len(lines) == 1 and "objective.n_generations" in lines[0], proc.stderr[-2000:]


# --------------------------------------------------------------------------- gradients


def test_lambda_zero_is_exactly_ce_and_never_samples() -> None:
    model, tok = lora_model()
    ctx = context(tok)
    batch = make_batch(ctx)
    ce_loss = CrossEntropyObjective().compute_loss(model, batch, None, 1).loss
    ce = lora_grads(model, ce_loss)
    obj = objective(ctx, pg_weight=0.0)
    calls = with_fixed_samples(obj, tok)
    out = obj.compute_loss(model, batch, None, 1)
    poly = lora_grads(model, out.loss)
    assert calls == []  # no generation at all
    assert torch.equal(out.loss, ce_loss)
    assert poly.keys() == ce.keys() and all(torch.equal(poly[k], ce[k]) for k in ce)
    assert "train/pg_loss" not in out.metrics


def test_positive_lambda_changes_the_lora_gradient_by_the_pg_term() -> None:
    model, tok = lora_model()
    ctx = context(tok)
    batch = make_batch(ctx)
    ce = lora_grads(model, cross_entropy_loss(model, batch, None, 1))
    obj = objective(ctx, pg_weight=0.5)
    calls = with_fixed_samples(obj, tok)
    out = obj.compute_loss(model, batch, None, 1)
    poly = lora_grads(model, out.loss)
    assert calls == [2]  # one batched call for the batch's two prompts
    diff = sum(float((poly[k] - ce[k]).abs().sum()) for k in ce)
    assert diff > 1e-4
    # ... and the difference is exactly λ × the gradient of the PG term on those samples.
    adv = obj.last_advantages  # std-scaled (advantage_norm=group_std)
    assert any(a != 0 for aa in adv for a in aa)
    prompts = obj.prompt_ids([0, 1])
    ids, _ = fixed_samples(tok, 2)
    pg = lora_grads(model, obj.pg_terms(model, prompts, ids, adv).pg_loss)
    for k in ce:
        torch.testing.assert_close(poly[k], ce[k] + 0.5 * pg[k], atol=1e-6, rtol=1e-5)
    for key in (
        "train/quality_loss",
        "train/pg_loss",
        "train/combined_loss",
        "train/diversity_score",
        "train/sample_quality",
        "train/set_score",
        "train/generation_time_s",
        "train/learning_time_s",
    ):
        assert key in out.metrics, key
    assert out.metrics["train/combined_loss"] == pytest.approx(
        out.metrics["train/quality_loss"] + 0.5 * out.metrics["train/pg_loss"]
    )


def sample_token_logprobs(model: torch.nn.Module, tok: Any, prompts, ids) -> torch.Tensor:
    packed = pack(prompts, ids, tok.pad_token_id, torch.device("cpu"))
    with torch.no_grad():
        model.eval()
        out = packed.token_logprobs(model)
        model.train()
    return out, packed.target_mask


@pytest.mark.parametrize("normalizer", ["constant", "sample_mean"])
def test_pg_loss_token_sum_over_constant_or_per_sample_mean(normalizer: str) -> None:
    model, tok = lora_model()
    obj = objective(context(tok), pg_normalizer=normalizer, max_new_tokens=10)
    prompts = obj.prompt_ids([0, 1])
    ids, _ = fixed_samples(tok, 2)
    adv = [[0.3, -0.1, -0.2], [0.0, 0.5, -0.5]]
    logp, mask = sample_token_logprobs(model, tok, prompts, ids)
    a = torch.tensor([x for aa in adv for x in aa])
    if normalizer == "constant":  # Σ_i A_i Σ_t log π / (R · max_new_tokens), R = 6 samples
        expected = -(a * logp.sum(1)).sum() / (6 * 10)
    else:
        expected = -(a * logp.sum(1) / mask.sum(1)).mean()
    got = obj.pg_terms(model, prompts, ids, adv).pg_loss
    torch.testing.assert_close(got, expected)
    # Teacher forcing on [prompt + sample] alone gives the same log-probs (padding is inert).
    single, _ = sample_token_logprobs(model, tok, [prompts[1]], [[ids[1][2]]])
    torch.testing.assert_close(single[0].sum(), logp[5].sum(), atol=1e-5, rtol=1e-5)


def test_pg_pass_runs_with_lora_dropout_off() -> None:
    """Samples are drawn in eval mode, so the PG log-probs are too (LoRA dropout 0.5 here)."""
    base, tok = load_base_model(TINY, CPU)
    torch.manual_seed(0)
    model = wrap_lora(base, OmegaConf.merge(LORA, {"dropout": 0.5}), CPU)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.train()
    obj = objective(context(tok))
    prompts = obj.prompt_ids([0])
    ids, _ = fixed_samples(tok, 1)
    adv = [[1.0, -1.0, 0.5]]
    first = obj.pg_terms(model, prompts, ids, adv).pg_loss
    second = obj.pg_terms(model, prompts, ids, adv).pg_loss
    assert model.training  # the mode is restored
    torch.testing.assert_close(first, second, rtol=0, atol=0)  # no dropout noise
    logp, _ = sample_token_logprobs(model, tok, prompts, ids)
    expected = -(torch.tensor(adv[0]) * logp.sum(1)).sum() / (3 * obj.max_new_tokens)
    torch.testing.assert_close(first, expected)


def test_sgd_step_on_pg_term_raises_positive_and_lowers_negative_samples() -> None:
    model, tok = lora_model()
    obj = objective(context(tok))
    prompts = obj.prompt_ids([0])
    ids, _ = fixed_samples(tok, 1, ["the cat", "a bird"])
    before = sample_token_logprobs(model, tok, prompts, ids)[0].sum(1)
    loss = obj.pg_terms(model, prompts, ids, [[1.0, -1.0]]).pg_loss
    grads = lora_grads(model, loss)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p -= 0.05 * grads[name]
    after = sample_token_logprobs(model, tok, prompts, ids)[0].sum(1)
    assert after[0] > before[0] and after[1] < before[1]


def test_kl_is_zero_at_init_and_positive_once_the_adapter_moves() -> None:
    model, tok = lora_model()
    # k2 (½ r² per token) is >= 0 on any samples; k1 is a KL estimate only on-policy (these
    # are fixed samples) and is checked against the exact KL in test_estimators.py.
    obj = objective(context(tok), pg_weight=0.3, kl_weight=0.1, kl_estimator="k2")
    with_fixed_samples(obj, tok)
    batch = make_batch(obj.context)
    out = obj.compute_loss(model, batch, None, 1)
    assert out.metrics["train/kl"] == pytest.approx(0.0, abs=1e-6)  # LoRA B = 0 at init
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    out = obj.compute_loss(model, batch, None, 1)
    assert out.metrics["train/kl"] > 1e-4
    assert out.metrics["train/combined_loss"] == pytest.approx(
        out.metrics["train/quality_loss"]
        + 0.3 * out.metrics["train/pg_loss"]
        + 0.1 * out.metrics["train/kl_loss"]
    )


def test_gradient_accumulation_scaling_and_generate_every() -> None:
    model, tok = lora_model()
    ctx = context(tok)
    batch = make_batch(ctx)
    obj = objective(ctx, pg_weight=0.4, generate_every=2)
    calls = with_fixed_samples(obj, tok)
    # grad_accum 2: micro-batches 0, 1 are step 0 (PG), 2, 3 step 1 (CE only), 4 step 2 (PG).
    losses = [obj.compute_loss(model, batch, None, 2) for _ in range(5)]
    assert calls == [2, 2, 2]
    assert ["train/pg_loss" in o.metrics for o in losses] == [True, True, False, False, True]
    ce = cross_entropy_loss(model, batch, None, 2)
    torch.testing.assert_close(losses[2].loss, ce)
    pg = losses[0].metrics["train/pg_loss"]
    expected = float(ce.detach()) + 0.4 * pg / 2
    assert float(losses[0].loss.detach()) == pytest.approx(expected, rel=1e-5)


# --------------------------------------------------------------------------- scoring


@pytest.mark.parametrize("metric", ["semantic", "self_bleu", "distinct"])
def test_identical_sets_score_zero_unrelated_sets_high(metric: str) -> None:
    # The real scorers (MiniLM for semantic): the same functions the evaluation uses.
    obj = PolychromicObjective(diversity_metric=metric, quality="none")
    same = ["The cat sat on the mat."] * 3
    unrelated = [
        "The cat sat on the mat.",
        "Quantum chromodynamics describes quarks.",
        "Pineapple pizza tastes sweet.",
    ]
    examples = [Example(id="a", prompt="p", response="r")] * 2
    scored = obj.score(examples, [same, unrelated])
    assert scored.diversities[0] == 0.0 and scored.set_scores[0] == 0.0
    assert scored.advantages[0] == pytest.approx([0.0, 0.0, 0.0])
    assert scored.diversities[1] > 0.5 and scored.set_scores[1] > 0.5


def test_gibberish_with_quality_zero_scores_zero_only_under_polychromic() -> None:
    example = WordTask(n_examples=1, seed=0).load()[0]
    gibberish = ["xqzt blorp", "flibber jab", "zzkk mm"]
    poly = PolychromicObjective(diversity_metric="distinct", quality="checker")
    poly.context = ObjectiveContext(
        tokenizer=None,
        examples=[example],  # type: ignore[arg-type]
        prompt_format=PromptFormat(),
        checker=WordChecker(),
    )
    scored = poly.score([example], [gibberish])
    assert scored.qualities == [[0.0, 0.0, 0.0]] and scored.diversities[0] > 0.5
    assert scored.set_scores == [0.0] and scored.advantages[0] == [0.0, 0.0, 0.0]
    additive = PolychromicObjective(
        diversity_metric="distinct", quality="checker", set_score="additive"
    )
    additive.context = poly.context
    assert additive.score([example], [gibberish]).set_scores[0] == pytest.approx(
        scored.diversities[0]
    )
    # A correct answer among them raises the set above zero and gets the largest advantage.
    mixed = [example.response, "flibber jab", "zzkk mm"]
    scored = poly.score([example], [mixed])
    assert scored.qualities == [[1.0, 0.0, 0.0]] and scored.set_scores[0] > 0
    assert scored.advantages[0][0] == max(scored.advantages[0])


def test_reference_similarity_uses_one_encode_call_per_step() -> None:
    embedder = CountingEmbedder()
    obj = PolychromicObjective(
        diversity_metric="semantic",
        quality="reference_similarity",
        n_generations=4,
        embedder=embedder,
    )
    examples = [
        Example(id="a", prompt="p", response="red apple"),
        Example(id="b", prompt="q", response="blue sky"),
    ]
    texts = [["red apple", "green apple", "red car", "dog"], ["blue sky"] * 4]
    scored = obj.score(examples, texts)
    assert len(embedder.calls) == 1  # samples + references, every subset reuses them
    assert scored.qualities[0][0] == 1.0 and scored.qualities[1] == [1.0] * 4
    assert scored.diversities[1] == 0.0 and scored.diversities[0] > 0
    assert all(abs(sum(a)) < 1e-9 for a in scored.advantages)
    # Next step: references are remembered, only the new samples are encoded.
    again = obj.score(examples, [["red bus", "red apple", "cat", "dog"], ["sky"] * 4])
    assert embedder.calls[1] == ["red bus", "cat", "dog", "sky"]  # samples are not kept
    assert again.qualities[0][1] == 1.0


def test_checker_with_check_batch_is_called_once_per_prompt() -> None:
    class BatchChecker:
        name = "batch"

        def __init__(self) -> None:
            self.batches = 0

        def __call__(self, example: Example, answer: str) -> CheckResult:
            raise AssertionError("check_batch should be used")

        def check_batch(self, pairs):
            self.batches += 1
            return [CheckResult(correct=a.startswith("y")) for _, a in pairs]

    checker = BatchChecker()
    obj = PolychromicObjective(diversity_metric="distinct", quality="checker")
    ex = Example(id="a", prompt="p", response="yes")
    obj.context = ObjectiveContext(
        tokenizer=None,
        examples=[ex],  # type: ignore[arg-type]
        prompt_format=PromptFormat(),
        checker=checker,
    )
    scored = obj.score([ex], [["yes sir", "no way", "yes maam"]])
    assert checker.batches == 1 and scored.qualities == [[1.0, 0.0, 1.0]]


def test_prompt_ids_are_cached_and_match_training_prompts() -> None:
    _, tok = load_base_model(TINY, CPU)
    ctx = context(tok)
    obj = objective(ctx)
    first = obj.prompt_ids([1, 0, 1])
    assert first[0] is first[2]  # cached per example index
    # The prompt training sees when nothing is truncated, and the one evaluation samples from.
    encoded = encode_example(ctx.examples[0], tok, ctx.prompt_format, 512)
    n_prompt = sum(1 for label in encoded["labels"] if label == -100)
    assert first[1] == encoded["input_ids"][:n_prompt]


# --------------------------------------------------------------------------- monitoring


def test_monitor_warns_on_collapse_once_per_episode() -> None:
    mon = TrainingMonitor(collapse_floor=0.1, patience=3)
    fired = [mon.observe(s, d, 1.0) for s, d in enumerate([0.5, 0.05, 0.05, 0.05, 0.02, 0.5])]
    kinds = [[w.kind for w in f] for f in fired]
    assert kinds == [[], [], [], ["diversity_collapse"], [], []]
    assert fired[3][0].step == 3 and "objective.collapse_floor=0.1" in fired[3][0].message
    # re-armed after recovery
    assert [len(mon.observe(s, 0.0, 1.0)) for s in range(6, 9)] == [0, 0, 1]


def test_monitor_flags_diversity_up_quality_down_not_both_up() -> None:
    mon = TrainingMonitor(collapse_floor=0.0, patience=3, window=4, min_change=0.05)
    hacking = [(0.2, 0.8), (0.25, 0.7), (0.5, 0.5), (0.6, 0.4)]
    fired = [w.kind for s, (d, q) in enumerate(hacking) for w in mon.observe(s, d, q)]
    assert fired == ["reward_hacking"]
    healthy = TrainingMonitor(collapse_floor=0.0, window=4)
    improving = [(0.2, 0.4), (0.25, 0.5), (0.5, 0.6), (0.6, 0.7)]
    assert not [w for s, (d, q) in enumerate(improving) for w in healthy.observe(s, d, q)]


def test_warning_is_logged_and_tagged_on_the_active_run(
    mlflow_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    mlflow.set_tracking_uri(mlflow_uri)
    mlflow.set_experiment("polychromic-warnings")
    with mlflow.start_run() as run, caplog.at_level("WARNING"):
        emit_warning(MonitorWarning("diversity_collapse", 7, "diversity collapse at step 7"))
    tags = mlflow.MlflowClient(mlflow_uri).get_run(run.info.run_id).data.tags
    assert tags["polylora.warning.diversity_collapse"] == "step 7"
    assert "diversity collapse at step 7" in caplog.text
    emit_warning(MonitorWarning("reward_hacking", 1, "no run: logged only"))  # no error


# --------------------------------------------------------------------------- end to end


def test_smoke_polychromic_trains_end_to_end(compose_cfg) -> None:
    from polylora.run.pipeline import run

    cfg = compose_cfg(["+experiment=smoke_polychromic"])
    assert cfg.objective.n_generations == 3 and cfg.model.source == "tiny_random"
    run(cfg)
    (record,) = runs_of(cfg)
    metrics = record.data.metrics
    for key in (
        "train/pg_loss",
        "train/diversity_score",
        "train/set_score",
        "train/quality_loss",
        "train/combined_loss",
        "train/generation_time_s",
    ):
        assert key in metrics, sorted(metrics)
    assert 0.0 <= metrics["train/diversity_score"] <= 1.0
    assert record.data.tags["polylora.objective"] == "polychromic"  # the config name
    client = mlflow.MlflowClient(cfg.tracking.uri)
    history = client.get_metric_history(record.info.run_id, "train/advantage_abs")
    assert history and max(m.value for m in history) > 0  # the PG term was live


# --------------------------------------------------------------------------- experiments


@pytest.mark.parametrize(
    ("baseline", "variant", "target", "values"),
    [
        ("baseline", "polychromic_0.3", "PolychromicObjective",
         {"pg_weight": 0.3, "n_generations": 3}),
        ("baseline_conservative", "polychromic_conservative", "PolychromicObjective",
         {"pg_weight": 0.15, "n_generations": 2}),
        ("baseline", "polychromic_correct", "PolychromicObjective",
         {"set_score": "correct_diversity"}),
        ("baseline", "polychromic_coverage", "PolychromicObjective", {"set_score": "coverage"}),
        ("baseline", "grpo", "GRPOObjective", {"pg_weight": 1.0, "advantage_norm": "group_std"}),
        ("baseline", "dr_grpo", "GRPOObjective", {"advantage_norm": "none"}),
        ("baseline", "passk_4", "PassKObjective", {"k": 4, "n_generations": 6}),
        ("baseline", "rl_from_ce", "GRPOObjective", {"ce_weight": 0.0}),
    ],
)
def test_rl_experiments_differ_from_baselines_only_in_the_objective(
    compose_cfg, baseline: str, variant: str, target: str, values: dict
) -> None:
    base = OmegaConf.to_container(compose_cfg([f"+experiment={baseline}"]), resolve=True)
    poly = OmegaConf.to_container(compose_cfg([f"+experiment={variant}"]), resolve=True)
    assert poly["objective"]["_target_"].endswith(target)
    assert {k: poly["objective"][k] for k in values} == values
    assert poly["experiment"] == variant and poly["tracking"]["group"] == variant
    for cfg in (base, poly):
        del cfg["objective"], cfg["experiment"], cfg["tracking"]["group"]
    assert base == poly


def test_standard_and_conservative_columns() -> None:
    from helpers import CONF_DIR
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from polylora.config import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR)):
        std = compose("config", overrides=["+experiment=polychromic_0.3", "output_dir=x"])
        con = compose("config", overrides=["+experiment=polychromic_conservative", "output_dir=x"])
    assert (std.lora.rank, std.lora.alpha, std.lora.dropout, std.train.learning_rate) == (
        16,
        16,
        0.1,
        2e-4,
    )
    assert (std.data.split.train, std.data.split.val, std.data.split.test) == (0.8, 0.1, 0.1)
    assert (con.lora.rank, con.lora.alpha, con.lora.dropout, con.train.learning_rate) == (
        8,
        16,
        0.15,
        1e-4,
    )
    assert (con.data.split.train, con.data.split.val, con.data.split.test) == (0.7, 0.15, 0.15)


def test_n2_needs_the_batch_set_baseline_for_a_signal() -> None:
    from polylora.data.example import Example
    from polylora.objectives.polychromic import PolychromicObjective

    examples = [
        Example(id="a", prompt="p", response="r"),
        Example(id="b", prompt="q", response="s"),
    ]
    texts = [["red green blue", "one two three"], ["same words", "same words"]]
    within = PolychromicObjective(n_generations=2, quality="none", diversity_metric="distinct")
    assert all(a == 0.0 for adv in within.score(examples, texts).advantages for a in adv)
    batch = PolychromicObjective(
        n_generations=2, quality="none", diversity_metric="distinct", set_baseline="batch"
    )
    adv = batch.score(examples, texts).advantages
    assert adv[0][0] > 0 and adv[0][1] > 0  # the diverse pair is reinforced
    assert adv[1][0] < 0 and adv[1][1] < 0  # the identical pair is pushed down
