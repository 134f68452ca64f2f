"""The shared Markdown table: escaping keeps every row one row with the header's cell count."""

from __future__ import annotations

from polylora.render.markdown import cell, row, table


def test_cell_escapes_pipes_and_folds_newlines() -> None:
    assert cell("a|b\nc") == "a\\|b c"
    assert cell(0.5) == "0.5"


def test_table_has_header_separator_and_one_line_per_row() -> None:
    lines = table(["x", "y"], [["1", "a|b"], [2, "multi\nline"]])
    assert lines[0] == "| x | y |"
    assert lines[1] == "|---|---|"
    assert lines[2:] == ["| 1 | a\\|b |", "| 2 | multi line |"]
    assert row(["only"]) == "| only |"


def test_signed_and_pval_cells() -> None:
    from polylora.render.markdown import pval, signed

    assert signed(0.1234) == "+0.123"
    assert signed(-0.5, 2) == "-0.50"
    assert signed(float("nan")) == "–"
    assert signed(float("-inf")) == "−∞"
    assert pval(0.01234) == "0.0123"
    assert pval(3e-6) == "3.00e-06"
    assert pval(None) == "–"
