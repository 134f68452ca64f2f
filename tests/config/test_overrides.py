"""Hydra quoting: a quoted value parses back to itself, quotes and backslashes included."""

from __future__ import annotations

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser

from polylora.config.overrides import hydra_quote


@pytest.mark.parametrize("value", ["plain", "it's", "a\\b", "ends\\", "x\\'y", "C:\\dir\\",
                                   "a,b=c {d} [e]", ""])
def test_quoted_value_parses_back_to_itself(value: str) -> None:
    override = OverridesParser.create().parse_override(f"key={hydra_quote(value)}")
    assert override.value() == value
