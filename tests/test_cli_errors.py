"""Bad input through the real entry point: one readable line, exit 2, no traceback, and no
MLflow run left RUNNING."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from helpers import REPO, tiny_configs


def polylora(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "polylora",
            "+experiment=smoke",
            f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"hydra.run.dir={tmp_path / 'run'}",
            *overrides,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def assert_clean_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for needle in needles:
        assert needle in proc.stderr, proc.stderr[-2000:]


def no_running_runs(tmp_path: Path) -> bool:
    db = tmp_path / "mlflow.db"
    if not db.exists():
        return True
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    exps = [e.experiment_id for e in client.search_experiments()]
    return all(r.info.status != "RUNNING" for r in client.search_runs(exps))


# Each message is checked in process (tests/config, tests/data/test_jsonl.py); through the
# entry point, one case per kind of failure (a config value, a config group, the data) runs
# by default and the others under -m slow.
SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    ("overrides", "needles"),
    [
        pytest.param(["data.split.train=0.5"], ["polylora: error:", "sum to 1"], marks=SLOW),
        (["lora.rank=0"], ["polylora: error:", "lora.rank must be a positive integer"]),
        pytest.param(["optimized_metric=eval/bogus"], ["polylora: error:", "bogus"], marks=SLOW),
        (["lora=r7"], ["Could not find 'lora/r7'", "r16"]),
        pytest.param(["lora.rank=abc"], ["lora.rank"], marks=SLOW),
    ],
)
def test_config_errors(tmp_path: Path, overrides: list[str], needles: list[str]) -> None:
    proc = polylora(tmp_path, *overrides)
    assert_clean_error(proc, *needles)
    assert proc.returncode in (1, 2)
    assert no_running_runs(tmp_path)


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ('{"prompt": "a", "response": "b"}\n{broken\n', ["data.jsonl:2", "not valid JSON"]),
        pytest.param('{"response": "b"}\n', ["data.jsonl:1", "missing field 'prompt'"],
                     marks=SLOW),
        pytest.param("", ["empty"], marks=SLOW),
    ],
)
def test_data_errors(tmp_path: Path, content: str, needles: list[str]) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(content)
    proc = polylora(tmp_path, "data=jsonl", f"data.path={data}")
    assert_clean_error(proc, "polylora: error:", *needles)
    assert proc.returncode == 2
    assert no_running_runs(tmp_path)


def test_mismatched_adapter_is_a_clear_error(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from polylora.model.loading import load_base_model, wrap_lora

    tiny, hw, lora = tiny_configs()
    wide = OmegaConf.merge(tiny, {"hidden_size": 64, "intermediate_size": 96})
    model, _ = load_base_model(wide, hw)
    wrap_lora(model, lora, hw).save_pretrained(tmp_path / "wide")
    proc = polylora(tmp_path, "train.enabled=false", f"model.adapter={tmp_path / 'wide'}")
    assert_clean_error(proc, "polylora: error:", "does not match")
    db = tmp_path / "mlflow.db"
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert runs and all(r.info.status == "FAILED" for r in runs)
