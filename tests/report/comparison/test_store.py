"""The comparison's MLflow side that needs no store: choosing the baseline group."""

from __future__ import annotations

import pytest

from polylora.errors import PolyloraError
from polylora.record.reader import RunInfo
from polylora.report.comparison.store import choose_baseline


def test_choose_baseline() -> None:
    def info(objective: str) -> RunInfo:
        return RunInfo("r", "0", "FINISHED", tags={"polylora.objective": objective})

    ce, poly = info("CrossEntropyObjective"), info("PolychromicObjective")
    assert choose_baseline({"baseline": [ce], "baseline_conservative": [ce]}, None) == "baseline"
    assert choose_baseline({"baseline_r8": [ce], "poly": [poly]}, None) == "baseline_r8"
    assert choose_baseline({"lora": [ce], "poly": [poly]}, None) == "lora"
    assert choose_baseline({"lora": [ce], "poly": [poly]}, "poly") == "poly"
    with pytest.raises(PolyloraError, match="several baseline groups"):
        choose_baseline({"baseline_a": [ce], "baseline_b": [ce]}, None)
    with pytest.raises(PolyloraError, match="pass --baseline, one of: a, b"):
        choose_baseline({"a": [poly], "b": [poly]}, None)
