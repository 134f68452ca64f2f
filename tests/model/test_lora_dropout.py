"""LoRA dropout restricted by row: exactly nn.Dropout without a selection, identity on the
rows left out and in eval mode, installed in place of PEFT's dropout modules."""

from __future__ import annotations

import torch
from helpers import tiny_configs
from omegaconf import OmegaConf

from polylora.model.loading import load_base_model, wrap_lora
from polylora.model.lora_dropout import (
    DropoutRows,
    RowDropout,
    dropout_active,
    dropout_rows,
    install_row_dropout,
)

TINY, CPU, LORA = tiny_configs()


def test_without_selection_it_is_nn_dropout() -> None:
    x = torch.randn(4, 5, 8)
    layer = RowDropout(0.3, DropoutRows())
    torch.manual_seed(1)
    got = layer(x)
    torch.manual_seed(1)
    torch.testing.assert_close(got, torch.nn.Dropout(0.3)(x))
    assert not torch.equal(got, x)
    layer.eval()
    assert torch.equal(layer(x), x)


def test_selected_rows_are_dropped_and_the_others_kept() -> None:
    x = torch.randn(4, 50, 8) + 3.0  # no zeros of its own
    selection = DropoutRows()
    layer = RowDropout(0.5, selection)
    selection.rows = torch.tensor([True, False, True, False])
    out = layer(x)
    assert torch.equal(out[1], x[1]) and torch.equal(out[3], x[3])
    for r in (0, 2):
        dropped = out[r] == 0
        assert 0.3 < float(dropped.float().mean()) < 0.7
        torch.testing.assert_close(out[r][~dropped], x[r][~dropped] * 2)
    selection.rows = torch.zeros(4, dtype=torch.bool)
    assert torch.equal(layer(x), x)


def test_installed_in_a_peft_model_and_scoped_by_context() -> None:
    base, _ = load_base_model(TINY, CPU)
    model = wrap_lora(base, OmegaConf.merge(LORA, {"dropout": 0.2}), CPU)
    model.train()
    selection = install_row_dropout(model)
    assert install_row_dropout(model) is selection  # idempotent
    layers = [m for m in model.modules() if isinstance(m, RowDropout)]
    assert layers and all(m.selection is selection and m.p == 0.2 for m in layers)
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    assert dropout_active(model)
    rows = torch.tensor([True, False])
    with dropout_rows(model, rows):
        assert selection.rows is rows
    assert selection.rows is None
    model.eval()
    assert not dropout_active(model)
