"""Tests for polylora.report.diagnose.columns: the matrix's columns come from the configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from polylora.errors import ConfigError
from polylora.report.diagnose.columns import CONF_DIR, DEFAULT_COLUMNS_FILE, load_columns


def test_shipped_columns_name_existing_experiments_of_their_objective() -> None:
    columns = load_columns()
    assert set(columns.standard) == set(columns.conservative) == {"ce", "polychromic"}
    for objective, experiment in [*columns.standard.items(), *columns.conservative.items()]:
        path = CONF_DIR / "experiment" / f"{experiment}.yaml"
        assert path.is_file(), path
        text = path.read_text(encoding="utf-8")
        assert f"override /objective: {objective}" in text, (experiment, objective)
    assert columns.is_conservative(columns.conservative["ce"])
    assert not columns.is_conservative(columns.standard["ce"])


def test_default_lambda_is_the_objective_config_value() -> None:
    columns = load_columns()
    conf = yaml.safe_load((CONF_DIR / "objective" / "polychromic.yaml").read_text())
    assert columns.default_lambda["polychromic"] == conf["pg_weight"]
    assert "ce" not in columns.default_lambda  # CE has no λ


def test_own_columns_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("standard: {ce: a}\nconservative: {ce: a_safe}\n")
    columns = load_columns(path)
    assert dict(columns.standard) == {"ce": "a"} and dict(columns.conservative) == {"ce": "a_safe"}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("standard: [a]\n", "must map objective names"),
        ("columns: {}\n", "unknown key"),
        ("- a\n", "expected a mapping"),
        ("standard: {ce: [\n", "not valid YAML"),
    ],
)
def test_bad_columns_file(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_columns(path)
    with pytest.raises(ConfigError, match="no columns file"):
        load_columns(tmp_path / "missing.yaml")
    assert DEFAULT_COLUMNS_FILE.is_file()
