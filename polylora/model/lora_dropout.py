"""LoRA dropout that can be restricted to some rows of a batch.

The RL objectives put the reference (CE) rows and the sampled rows through one forward: the CE
rows keep LoRA dropout (the small-data regularizer) while the sampled rows must be scored
without it (their log-probs are those of the distribution sampled from, in eval mode). PEFT
applies ``lora_dropout[adapter](x)`` before ``lora_A``; :func:`install_row_dropout` swaps those
``nn.Dropout`` modules for :class:`RowDropout`, which drops on every row (exactly
``nn.Dropout``) unless :func:`dropout_rows` names the rows that get it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn


class DropoutRows:
    """The rows of the current batch that get dropout (None: all of them); one per model."""

    def __init__(self) -> None:
        self.rows: torch.Tensor | None = None


class RowDropout(nn.Module):
    """``nn.Dropout(p)`` whose mask spares the rows that :class:`DropoutRows` leaves out."""

    def __init__(self, p: float, selection: DropoutRows) -> None:
        super().__init__()
        self.p = p
        self.selection = selection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Dropout on the selected rows (dim 0), identity on the others and in eval mode."""
        rows = self.selection.rows
        if not self.training or self.p == 0:
            return x
        if rows is None:
            return F.dropout(x, self.p, True)
        count = int(rows.sum())
        if count == 0:
            return x
        # Dropout of the selected rows only: the backward keeps their (boolean) mask and
        # nothing for the other rows, which pass through untouched.
        if bool(rows[:count].all()):  # the dropped rows first (how callers order them)
            return torch.cat([F.dropout(x[:count], self.p, True), x[count:]])
        index = rows.nonzero().squeeze(1)
        return x.index_copy(0, index, F.dropout(x.index_select(0, index), self.p, True))

    def extra_repr(self) -> str:
        return f"p={self.p}"


_SELECTION_ATTR = "_polylora_dropout_rows"


def install_row_dropout(model: nn.Module) -> DropoutRows:
    """Replace every LoRA ``nn.Dropout`` of ``model`` by :class:`RowDropout` (idempotent) and
    return the selection they share."""
    selection = getattr(model, _SELECTION_ATTR, None)
    if not isinstance(selection, DropoutRows):
        selection = DropoutRows()
        object.__setattr__(model, _SELECTION_ATTR, selection)
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, nn.ModuleDict):
            continue
        for name, layer in list(dropouts.items()):
            if isinstance(layer, nn.Dropout):
                replacement = RowDropout(layer.p, selection)
                replacement.train(layer.training)
                dropouts[name] = replacement
            elif isinstance(layer, RowDropout):
                layer.selection = selection
    return selection


def dropout_active(model: nn.Module) -> bool:
    """Whether a forward of ``model`` now would drop anything (training mode, some p > 0)."""
    return any(isinstance(m, (nn.Dropout, RowDropout)) and m.training and m.p > 0
               and _is_lora_dropout(name) for name, m in model.named_modules())


def _is_lora_dropout(name: str) -> bool:
    return ".lora_dropout." in f".{name}."


@contextmanager
def dropout_rows(model: nn.Module, rows: torch.Tensor | None) -> Iterator[None]:
    """Within the block, LoRA dropout applies only to ``rows`` (a bool per batch row)."""
    selection = install_row_dropout(model)
    previous = selection.rows
    selection.rows = rows
    try:
        yield
    finally:
        selection.rows = previous
