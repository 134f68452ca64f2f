"""A run names its code: the checkout's commit, whether it was dirty and a hash of the
difference, the library versions, the precision actually used and the command line."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from polylora.record import provenance


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def test_code_revision_tells_clean_from_dirty_and_one_change_from_another(
    tmp_path: Path,
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "a.py").write_text("x = 1\n")
    git(repo, "add", "a.py")
    git(repo, "commit", "-q", "-m", "one")
    clean = provenance.code_revision(repo)
    assert clean == {"commit": git(repo, "rev-parse", "HEAD"), "dirty": "false",
                     "diff_sha256": ""}
    assert provenance.revision_label(clean) == clean["commit"]
    (repo / "a.py").write_text("x = 2\n")
    first = provenance.code_revision(repo)
    (repo / "a.py").write_text("x = 3\n")
    second = provenance.code_revision(repo)
    assert first["dirty"] == second["dirty"] == "true"
    assert len(first["diff_sha256"]) == 64 and first["diff_sha256"] != second["diff_sha256"]
    (repo / "new.py").write_text("y = 1\n")  # an untracked module is part of the code too
    assert provenance.code_revision(repo)["diff_sha256"] != second["diff_sha256"]
    assert provenance.revision_label(second).startswith(clean["commit"] + "+dirty.")
    outside = provenance.code_revision(tmp_path)
    assert outside["commit"] == "unknown"


def test_versions_precision_and_command_line() -> None:
    versions = provenance.package_versions()
    assert versions["torch"] == version("torch") and versions["peft"] == version("peft")
    assert versions["polylora"] == version("polylora")
    cpu = OmegaConf.create({"device": "cpu", "precision": "fp32", "autocast": "off"})
    assert provenance.resolved_precision(cpu) == "fp32"
    forced = OmegaConf.create({"device": "cpu", "precision": "fp32", "autocast": "bf16"})
    assert provenance.resolved_precision(forced) == "fp32+autocast-bf16"
    line = provenance.command_line(["/x/polylora/__main__.py", "+experiment=smoke",
                                    "judge.api_key=sk-abcdefghijklmnopqrstuvwxyz12"])
    assert line.startswith("python -m polylora +experiment=smoke ") and "judge.api_key=" in line
    assert "sk-abc" not in line


def test_every_run_logs_its_provenance(compose_cfg: Callable[..., Any], tmp_path: Path,
                                       mlflow_uri: str) -> None:
    import mlflow

    from polylora.run import pipeline

    cfg = compose_cfg(["+experiment=smoke", "train.max_steps=1", "eval.enabled=false"],
                      output_dir=tmp_path / "run")
    result = pipeline.execute(cfg)
    tags = mlflow.MlflowClient(mlflow_uri).get_run(result.run_id).data.tags
    here = provenance.code_revision()
    assert tags["polylora.code.commit"] == here["commit"] != "unknown"
    assert tags["polylora.code.dirty"] == here["dirty"]
    assert tags["polylora.code.diff_sha256"] == here["diff_sha256"]
    for name in ("torch", "transformers", "peft", "polylora"):
        assert tags[f"polylora.version.{name}"] == version(name)
    assert tags["polylora.precision"] == "fp32"
    assert "polylora.command" in tags
