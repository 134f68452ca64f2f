"""Cross-entropy on response tokens: the baseline objective and the quality term of others."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from polylora.data.formatting import IGNORE_INDEX
from polylora.objectives.base import Backward, LossOutput, Objective
from polylora.objectives.logprobs import chunked_token_logprobs
from polylora.objectives.single_pass import decoder_and_head, projects_hidden_states


def response_token_nll_sum(
    model: torch.nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token NLL over labelled positions, and the number of those positions.

    From the decoder's hidden states with the vocabulary projected in chunks where the model
    allows it (:func:`projects_hidden_states`); otherwise as below.
    Logits are computed only from the first column any row needs onwards (``logits_to_keep``):
    prompt positions predict nothing that is scored, and the vocabulary projection of all of
    them was the largest tensor of the pass (a model without ``logits_to_keep`` computes all).
    """
    labels = batch["labels"]
    shift_labels = labels[:, 1:]
    if projects_hidden_states(model):
        return _chunked_nll_sum(model, batch)
    scored = (shift_labels != IGNORE_INDEX).any(0).nonzero()
    first = int(scored[0]) if len(scored) else shift_labels.shape[1]
    width = labels.shape[1]
    keep = min(max(width - 1 - first, 1) + 1, width)  # logits at positions first .. end
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    try:
        logits = model(**inputs, logits_to_keep=keep).logits
    except TypeError:  # a model without logits_to_keep
        logits = model(**inputs).logits
    logits = logits[:, -keep:]
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, width - keep + 1 :]
    nll = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    return nll, (shift_labels != IGNORE_INDEX).sum()


def _chunked_nll_sum(
    model: torch.nn.Module, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`response_token_nll_sum` from the decoder's hidden states at the labelled
    positions, projected onto the vocabulary in chunks (no (batch, length, vocabulary)
    logits)."""
    parts = decoder_and_head(model)
    assert parts is not None  # projects_hidden_states checked it
    decoder, head = parts
    hidden = decoder(input_ids=batch["input_ids"],
                     attention_mask=batch["attention_mask"]).last_hidden_state
    targets = batch["labels"][:, 1:]
    scored = targets != IGNORE_INDEX
    logp = chunked_token_logprobs(hidden[:, :-1][scored], head, targets[scored])
    return -logp.sum(), scored.sum()


def cross_entropy_loss(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    num_items_in_batch: int | torch.Tensor | None,
    grad_accum_steps: int,
) -> torch.Tensor:
    """Token-mean CE over the whole accumulation window (as one big batch would give)."""
    nll, count = response_token_nll_sum(model, batch)
    if num_items_in_batch is not None:
        return nll / num_items_in_batch
    return nll / count.clamp(min=1) / grad_accum_steps


class CrossEntropyObjective(Objective):
    """Plain supervised fine-tuning: mean next-token NLL of the reference response."""

    name = "ce"

    def compute_loss(
        self,
        model: torch.nn.Module,
        batch: dict[str, torch.Tensor],
        num_items_in_batch: int | torch.Tensor | None,
        grad_accum_steps: int,
        *,
        step: int | None = None,
        backward: Backward | None = None,
    ) -> LossOutput:
        """The token-mean CE of the micro-batch (every step alike: ``step`` and ``backward``
        are not needed)."""
        loss = cross_entropy_loss(model, batch, num_items_in_batch, grad_accum_steps)
        return LossOutput(loss=loss)
