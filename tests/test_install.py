"""The configs ship inside the package: a non-editable install (into a temp target dir, not
the source tree) runs ``python -m polylora +experiment=smoke`` from an unrelated directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from helpers import REPO


def copy_sources(dest: Path) -> Path:
    """The files git tracks (or would), so the build never writes into the worktree."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
        text=True, check=True,
    ).stdout.split("\n")
    for name in filter(None, listed):
        src = REPO / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.mark.slow
def test_non_editable_install_runs_from_another_directory(tmp_path: Path) -> None:
    source = copy_sources(tmp_path / "source")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(target), str(source)],
        check=True, capture_output=True, text=True, timeout=600,
    )
    assert (target / "polylora" / "conf" / "config.yaml").is_file()
    assert (target / "polylora" / "conf" / "experiment" / "smoke.yaml").is_file()
    assert (target / "polylora" / "data" / "examples" / "replies.jsonl").is_file()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}  # not the sources
    where = subprocess.run([sys.executable, "-c", "import polylora; print(polylora.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.strip().startswith(str(target)), where.stdout
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = subprocess.run(
        [sys.executable, "-m", "polylora", "+experiment=smoke", f"tracking.uri={uri}"],
        cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert list(elsewhere.glob("outputs/smoke/*/adapter/adapter_model.safetensors"))
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert run.info.status == "FINISHED" and "eval/pass_at_1" in run.data.metrics


def test_the_dev_extra_installs_the_cluster_extra() -> None:
    """``make install`` (``.[dev]``) brings what the cluster tests run: PostgreSQL driver and
    submitit launcher, the same pins as ``pip install 'polylora[cluster]'``."""
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert extras["cluster"] and set(extras["cluster"]) <= set(extras["dev"])
    assert any(req.startswith("psycopg[binary]") for req in extras["cluster"])
