"""Tests for polylora.report.headline_inputs: paths in the report are portable."""

from __future__ import annotations

from pathlib import Path

from polylora.report.headline_inputs import portable


def test_portable_paths_are_relative_to_the_checkout(tmp_path: Path) -> None:
    root = tmp_path / "checkout"
    text = (f"{root}/.venv/bin/python -m polylora tracking.uri=sqlite:///{root}/mlflow.db "
            f"--out {root}/docs/results elsewhere=/data/{root.name}/x")
    assert portable(text, root) == (
        ".venv/bin/python -m polylora tracking.uri=sqlite:///mlflow.db --out docs/results "
        f"elsewhere=/data/{root.name}/x")
    assert portable(text, None) == text
