"""Cross-entropy objective: token-mean NLL of response tokens only, and gradient-accumulation
scaling that makes micro-batches add up to the big batch."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from polylora.data.formatting import IGNORE_INDEX, PaddingCollator, PromptFormat, encode_example
from polylora.data.words import WordTask
from polylora.model.loading import load_base_model
from polylora.objectives.ce import (
    CrossEntropyObjective,
    cross_entropy_loss,
    response_token_nll_sum,
)

TINY = OmegaConf.create({
    "source": "tiny_random", "hidden_size": 32, "intermediate_size": 64, "num_layers": 2,
    "num_heads": 4, "num_kv_heads": 2, "init_seed": 0, "trust_remote_code": False,
})
CPU = OmegaConf.create({"device": "cpu", "precision": "fp32", "load_in_4bit": False})


def setup(n: int = 4):
    model, tok = load_base_model(TINY, CPU)
    model.eval()  # no dropout: losses comparable across calls
    feats = [encode_example(e, tok, PromptFormat(), 64) for e in WordTask(n, seed=1).load()]
    return model, tok, feats


def test_loss_is_the_token_mean_nll_of_response_tokens() -> None:
    model, tok, feats = setup()
    batch = PaddingCollator(tok.pad_token_id)(feats)
    with torch.no_grad():
        loss = CrossEntropyObjective().compute_loss(model, batch, None, 1).loss
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # By hand: every labelled position t predicts token t from logits at t-1.
    terms = []
    for row in range(len(feats)):
        for t in range(1, batch["labels"].shape[1]):
            target = int(batch["labels"][row, t])
            if target != IGNORE_INDEX:
                terms.append(-torch.log_softmax(logits[row, t - 1], -1)[target])
    n_response = sum(sum(1 for x in f["labels"] if x != IGNORE_INDEX) for f in feats)
    assert len(terms) == n_response > 0
    torch.testing.assert_close(loss, torch.stack(terms).mean())


def test_prompt_tokens_do_not_count() -> None:
    model, tok, feats = setup(2)
    batch = PaddingCollator(tok.pad_token_id)(feats)
    n_prompt = [sum(1 for x in f["labels"] if x == IGNORE_INDEX) for f in feats]
    n_response = [len(f["labels"]) - p for f, p in zip(feats, n_prompt, strict=True)]
    # Labelling the prompt positions too (as a naive LM loss would) must change the count.
    everything = dict(batch, labels=batch["input_ids"].masked_fill(
        batch["attention_mask"] == 0, IGNORE_INDEX))
    with torch.no_grad():
        nll, count = response_token_nll_sum(model, batch)
        nll_all, count_all = response_token_nll_sum(model, everything)
    assert int(count) == sum(n_response)
    assert int(count_all) == sum(n_response) + sum(p - 1 for p in n_prompt)  # no target at t=0
    assert nll_all > nll


def test_accumulated_micro_batches_add_up_to_the_big_batch() -> None:
    model, tok, feats = setup(4)
    collate = PaddingCollator(tok.pad_token_id)
    with torch.no_grad():
        full = cross_entropy_loss(model, collate(feats), None, 1)
        halves = [collate(feats[:2]), collate(feats[2:])]
        total = sum(int((h["labels"][:, 1:] != IGNORE_INDEX).sum()) for h in halves)
        # The Trainer's path: num_items_in_batch = response tokens in the whole window.
        by_tokens = sum(cross_entropy_loss(model, h, total, 2) for h in halves)
        # Without it: each micro-batch's mean divided by the accumulation steps.
        by_steps = sum(cross_entropy_loss(model, h, None, 2) for h in halves)
        means = [cross_entropy_loss(model, h, None, 1) for h in halves]
    torch.testing.assert_close(by_tokens, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(by_steps, (means[0] + means[1]) / 2)


def test_ce_objective_reports_no_metrics_and_keeps_the_graph() -> None:
    model, tok, feats = setup(2)
    model.train()
    out = CrossEntropyObjective().compute_loss(model, PaddingCollator(tok.pad_token_id)(feats),
                                               None, 1)
    assert out.metrics == {} and out.loss.requires_grad
    out.loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_logits_only_where_scored_equal_full_logits_nll_and_gradients() -> None:
    """The NLL computes logits from the first scored column on (``logits_to_keep``): same sum,
    count and gradients as cross-entropy over every position's logits, including a row whose
    response starts later, a padded row and a batch with nothing scored."""
    import torch.nn.functional as F

    model, _tok, _feats = setup()
    torch.manual_seed(0)
    ids = torch.randint(5, 100, (3, 12))
    mask = torch.ones_like(ids)
    mask[2, 9:] = 0
    labels = ids.clone()
    labels[:, :6] = IGNORE_INDEX
    labels[1, :8] = IGNORE_INDEX
    labels[2, 9:] = IGNORE_INDEX
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    nll, count = response_token_nll_sum(model, batch)
    logits = model(input_ids=ids, attention_mask=mask).logits
    full = F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")
    assert int(count) == int((labels[:, 1:] != IGNORE_INDEX).sum()) == 13
    torch.testing.assert_close(nll, full)
    params = [p for p in model.parameters() if p.requires_grad][-3:]
    g_kept = torch.autograd.grad(nll, params)
    g_full = torch.autograd.grad(full, params)
    for a, b in zip(g_kept, g_full, strict=True):
        torch.testing.assert_close(a, b)
    nothing, zero = response_token_nll_sum(
        model, {**batch, "labels": torch.full_like(labels, IGNORE_INDEX)})
    assert float(nothing.detach()) == 0.0 and int(zero) == 0
