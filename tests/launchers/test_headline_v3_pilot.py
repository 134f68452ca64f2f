"""The third headline's pilot analysis: from the two tables alone it states both manipulation
checks, the room at each k and the power table; without run ids it says what is missing."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
from helpers import REPO
from report.test_headline_v3 import synthetic

from polylora.report import headline_v3 as v3

SCRIPT = REPO / "launchers" / "headline_v3_pilot.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("headline_v3_pilot", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["headline_v3_pilot"] = module
    spec.loader.exec_module(module)
    return module


def test_pilot_report_from_the_tables(tmp_path: Path) -> None:
    tables = synthetic(effect=0.1, seeds=1, sharpen=-0.3, differs=0.4)
    keep = {r.run_id for r in tables.runs if r.arm in ("sft", "grpo", "polychromic")}
    v3.write_tables(tmp_path, [r for r in tables.runs if r.run_id in keep],
                    {k: v for k, v in tables.scores.items() if k in keep}, tables.kinds)
    assert load().main(["--from-tables", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "pilot.md").read_text(encoding="utf-8")
    sharpening = next(line for line in text.splitlines() if "distinct_per_correct" in line)
    estimate, low, high = (float(x) for x in re.findall(r"[-+]\d\.\d{3}", sharpening)[:3])
    assert -0.33 < estimate < -0.27 and low < estimate < high < 0  # planted: −0.3
    assert "**0.400** (needed ≥ 0.333)" in text
    power_rows = [line for line in text.split("## Power", 1)[1].splitlines()
                  if line.startswith("| ") and line[2].isdigit()]
    mdes = [float(line.rstrip(" |").rsplit("|", 1)[1]) for line in power_rows]
    assert len(mdes) == 6 and mdes == sorted(mdes, reverse=True)  # more seeds, smaller MDE


def test_pilot_needs_its_runs_or_the_tables(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load().main(["--out", str(tmp_path), "--sft", "abc"])
    assert "--tracking-uri, --grpo, --polychromic" in capsys.readouterr().err
