"""One teacher-forced pass over a step's reference (CE) rows and sampled rows.

Every row is a *prefix* (a prompt) and a *continuation* scored token by token. The prefixes
go through the decoder once, left-padded, with a KV cache; the continuations then run from
their prefix's cache (a prompt shared by N samples is computed once), so the whole step is two
decoder calls and one backward. LoRA dropout is restricted to the rows that ask for it
(:mod:`polylora.model.lora_dropout`): a CE row and its prefix are dropped as in a plain CE forward,
sampled rows are scored without dropout, as they were sampled. Token log-probs come from
:func:`chunked_token_logprobs`: the vocabulary projection never materialises the batch's
full-vocabulary logits.

Used for models whose logits are ``lm_head(decoder(...))`` with a KV cache (Llama, Qwen,
Mistral, SmolLM2, ...); :func:`supports_single_pass` says when, else the callers use the
separate passes of :mod:`polylora.objectives.logprobs` and :mod:`polylora.objectives.ce`.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from polylora.data.formatting import IGNORE_INDEX, left_pad
from polylora.model.lora_dropout import dropout_rows
from polylora.objectives.logprobs import LOGIT_CHUNK, chunked_token_logprobs

#: Config attributes of models whose logits are not ``lm_head(hidden)`` (soft-capping, scaling).
_LOGIT_TRANSFORMS = ("final_logit_softcapping", "logit_scale", "logits_scaling",
                     "output_multiplier_scale")


@dataclass
class ScoredRows:
    """Rows to score: ``prefixes`` (token lists, each with a dropout flag) and, per row, the
    index of its prefix, the tokens fed after it, the targets (``targets[0]`` is predicted by
    the prefix's last position, ``targets[j]`` by ``fed[j - 1]``; IGNORE_INDEX: not scored)
    and the temperature of its distribution."""

    prefixes: list[list[int]] = field(default_factory=list)
    prefix_dropout: list[bool] = field(default_factory=list)
    owner: list[int] = field(default_factory=list)
    fed: list[list[int]] = field(default_factory=list)
    targets: list[list[int]] = field(default_factory=list)
    temperature: list[float] = field(default_factory=list)
    _index: dict[tuple[bool, tuple[int, ...]], int] = field(default_factory=dict)

    def prefix(self, tokens: Sequence[int], dropout: bool) -> int:
        """The index of this prefix: shared by rows without dropout (a prompt and its N
        samples), a new one for each row with dropout (independent masks, as in a batch)."""
        key = (dropout, tuple(tokens))
        if dropout or key not in self._index:
            self._index[key] = len(self.prefixes)
            self.prefixes.append(list(tokens))
            self.prefix_dropout.append(dropout)
        return self._index[key]

    def add(self, prefix: int, fed: Sequence[int], targets: Sequence[int],
            temperature: float) -> int:
        """Add one row; returns its index."""
        if len(fed) != max(len(targets) - 1, 0):
            raise ValueError("a row feeds one token fewer than it scores")
        self.owner.append(prefix)
        self.fed.append(list(fed))
        self.targets.append(list(targets))
        self.temperature.append(float(temperature))
        return len(self.owner) - 1


def decoder_and_head(model: torch.nn.Module) -> tuple[Any, Any] | None:
    """The model's decoder (hidden states) and output head, or None where it has no such
    split."""
    base: Any = getattr(model, "module", model)
    try:
        decoder = base.get_decoder()
        head = base.get_output_embeddings()
    except (AttributeError, NotImplementedError, ValueError):
        return None
    if decoder is None or decoder is base or head is None:
        return None
    return decoder, head


def _cache_argument(decoder: Any) -> str:
    """The decoder's name for the KV cache (``cache`` from transformers 5.25 on, before it
    ``past_key_values``), in and out."""
    return "cache" if "cache" in inspect.signature(decoder.forward).parameters \
        else "past_key_values"


def supports_single_pass(model: torch.nn.Module) -> bool:
    """Whether ``model`` computes logits as ``lm_head(decoder(...))``, keeps a KV cache (not
    under gradient checkpointing) and is not wrapped for DDP (whose gradient all-reduce hooks
    only its own forward)."""
    return projects_hidden_states(model) and not getattr(model, "is_gradient_checkpointing",
                                                         False)


def projects_hidden_states(model: torch.nn.Module) -> bool:
    """Whether ``model``'s logits are ``lm_head(decoder(...))`` and it is not a DDP wrapper:
    then log-probs can be computed from the decoder's hidden states, chunk by chunk."""
    if getattr(model, "module", model) is not model:
        return False
    parts = decoder_and_head(model)
    config = getattr(model, "config", None)
    if parts is None or config is None:
        return False
    if getattr(config, "is_encoder_decoder", False):
        return False
    return all(not getattr(config, name, None) for name in _LOGIT_TRANSFORMS)


def activation_bytes_per_position(model: torch.nn.Module) -> float:
    """An estimate of the autograd memory one token position of a pass keeps until the
    backward: layers × (20 · hidden + 6 · intermediate) fp32 values, calibrated on SmolLM2-135M
    with LoRA on all linear layers (2.5 MB a position measured; bf16 autocast keeps ~20 %
    less). Used to split a step only when it would not fit ``objective.memory_budget_mb``."""
    config = getattr(model, "config", None)
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    layers = int(getattr(config, "num_hidden_layers", 0) or 0)
    inner = int(getattr(config, "intermediate_size", 0) or 4 * hidden)
    return float(layers * (20 * hidden + 6 * inner) * 4)


def ce_rows(rows: ScoredRows, batch: dict[str, torch.Tensor], dropout: bool) -> list[int]:
    """Add the batch's right-padded [prompt | response] rows (labels IGNORE_INDEX on the prompt)
    as rows scoring their labelled tokens, cut after the prompt; returns their indices."""
    out = []
    for ids, mask, labels in zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist(),
                                 batch["labels"].tolist(), strict=True):
        end = int(sum(mask))
        scored = [t for t in range(1, end) if labels[t] != IGNORE_INDEX]
        cut = scored[0] if scored else end  # no labelled token: the whole row is a prefix
        prefix = rows.prefix(ids[:cut], dropout)
        out.append(rows.add(prefix, ids[cut : end - 1] if end > cut else [], labels[cut:end],
                            1.0))
    return out


def row_logprobs(
    model: torch.nn.Module, rows: ScoredRows, pad_id: int, chunk: int = LOGIT_CHUNK
) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, max targets) log-probs of every row's targets and their mask (1 where scored),
    from two decoder calls (prefixes, then continuations on their cache)."""
    parts = decoder_and_head(model)
    if parts is None:
        raise ValueError("this model has no separate decoder and output head")
    decoder, head = parts
    device = next(model.parameters()).device
    n_rows = len(rows.owner)
    width = max((len(t) for t in rows.targets), default=0)
    fed_width = max((len(f) for f in rows.fed), default=0)
    p_ids, p_mask = (t.to(device) for t in left_pad(rows.prefixes, pad_id))
    drop = torch.tensor(rows.prefix_dropout, dtype=torch.bool, device=device)
    owner = torch.tensor(rows.owner, dtype=torch.long, device=device)
    with dropout_rows(model, drop):
        first = decoder(input_ids=p_ids, attention_mask=p_mask, use_cache=fed_width > 0,
                        position_ids=(p_mask.cumsum(-1) - 1).clamp(min=0))
    cache_name = _cache_argument(decoder)
    hidden = [first.last_hidden_state[:, -1][owner][:, None]]  # predicts targets[0]
    if fed_width > 0:
        f_ids = torch.full((n_rows, fed_width), pad_id, dtype=torch.long)
        f_mask = torch.zeros_like(f_ids)
        for r, fed in enumerate(rows.fed):
            if fed:
                f_ids[r, : len(fed)] = torch.tensor(fed, dtype=torch.long)
                f_mask[r, : len(fed)] = 1
        f_ids, f_mask = f_ids.to(device), f_mask.to(device)
        cache = getattr(first, cache_name)
        cache.batch_select_indices(owner)
        start = p_mask.sum(1)[owner][:, None]
        with dropout_rows(model, drop[owner]):
            second = decoder(input_ids=f_ids, **{cache_name: cache}, use_cache=True,
                             attention_mask=torch.cat([p_mask[owner], f_mask], dim=1),
                             position_ids=start + torch.arange(fed_width, device=device))
        hidden.append(second.last_hidden_state)
    states = torch.cat(hidden, dim=1)[:, :width]
    targets = torch.full((n_rows, width), IGNORE_INDEX, dtype=torch.long)
    for r, t in enumerate(rows.targets):
        targets[r, : len(t)] = torch.tensor(t, dtype=torch.long)
    targets = targets.to(device)
    scored = targets != IGNORE_INDEX
    where = scored.nonzero(as_tuple=True)
    temperature = torch.tensor(rows.temperature, device=device)[where[0]]
    flat = chunked_token_logprobs(states[where], head, targets[where], temperature, chunk)
    logp = torch.zeros((n_rows, width), device=device, dtype=flat.dtype).index_put(where, flat)
    return logp, scored.float()
