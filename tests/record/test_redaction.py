"""One redaction for params, tags, config dumps and logs; a secret given on the command line
appears in no file the run writes, no MLflow param or tag, and no log line."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import mlflow
import pytest
from helpers import REPO
from omegaconf import OmegaConf

from polylora.record import redaction
from polylora.record.redaction import REDACTED, redact, redact_override, redact_text
from polylora.record.tracking import config_params, redact_tags


def test_values_that_look_like_credentials_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    assert redact_text("https://alice:hunter2@host/db") == f"https://{REDACTED}@host/db"
    assert redact_text("key sk-ant-api03-abcdefghijklmnop1234 end") == f"key {REDACTED} end"
    assert redact_text("hf_" + "a" * 30) == REDACTED
    assert redact_text("max_new_tokens=16 https://host/x") == "max_new_tokens=16 https://host/x"
    monkeypatch.setenv("MY_SERVICE_TOKEN", "plain-looking-value")
    assert redact_text("uri=http://h/?q=plain-looking-value") == f"uri=http://h/?q={REDACTED}"


def test_keys_and_overrides() -> None:
    assert redact_override("+tracking.tags.api_key=abc") == f"+tracking.tags.api_key={REDACTED}"
    assert redact_override("eval.max_new_tokens=16") == "eval.max_new_tokens=16"
    assert redact_override("model.path=https://u:p@h/m") == f"model.path=https://{REDACTED}@h/m"
    cleaned = redact({"judge": {"api_key": "x", "model": "m"}, "list": ["hf_token=abc"]})
    assert cleaned == {
        "judge": {"api_key": REDACTED, "model": "m"},
        "list": [f"hf_token={REDACTED}"],
    }


def test_params_and_tags_use_the_redaction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "envsecret-123456")
    cfg = OmegaConf.create(
        {"hub": {"hf_token": "x"}, "a": "${oc.env:ANTHROPIC_API_KEY}", "u": "s3://k:v@b/p"}
    )
    params = config_params(cfg)
    assert "hub.hf_token" not in params
    assert params["a"] == REDACTED and params["u"] == f"s3://{REDACTED}@b/p"
    tags = redact_tags({"polylora.overrides": "a=1 +x.password=pw", "t": "envsecret-123456"})
    assert tags == {"polylora.overrides": f"a=1 +x.password={REDACTED}", "t": REDACTED}


def test_log_records_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    factory = logging.getLogRecordFactory()
    try:
        redaction.install_log_redaction()
        with caplog.at_level(logging.INFO):
            logging.getLogger("x").info("connect %s", "https://bob:pw123@h")
        assert "pw123" not in caplog.text and REDACTED in caplog.text
    finally:
        logging.setLogRecordFactory(factory)


def _files_containing(root: Path, needles: list[str]) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits += [f"{path}: {n}" for n in needles if n.encode() in data]
    return hits


def test_secrets_in_overrides_reach_no_artifact_tag_param_or_log(tmp_path: Path) -> None:
    key_value = f"plain{uuid.uuid4().hex[:10]}"  # a secret only by its key's name
    token = f"sk-ant-api03-{uuid.uuid4().hex}"  # a secret by its shape
    password = f"pw{uuid.uuid4().hex[:10]}"  # URL userinfo
    env_value = f"env{uuid.uuid4().hex[:12]}"  # resolved from ${oc.env:...}
    secrets = [key_value, token, password, env_value]
    db = tmp_path / "mlflow.db"
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO),
        "ANTHROPIC_API_KEY": env_value,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "polylora",
            "+experiment=smoke",
            "train.max_steps=2",
            "eval.subset_size=2",
            f"tracking.uri=sqlite:///{db}",
            f"hydra.run.dir={tmp_path / 'run'}",
            f"+tracking.tags.api_key={key_value}",
            f"+tracking.tags.note={token}",
            f"eval.judge.base_url=https://judge:{password}@judge.example",
            "+tracking.tags.from_env=${oc.env:ANTHROPIC_API_KEY}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    logs = proc.stdout + proc.stderr
    assert [s for s in secrets if s in logs] == []
    assert _files_containing(tmp_path, secrets) == []  # run dir, .hydra/, artifacts, mlflow.db
    client = mlflow.MlflowClient(f"sqlite:///{db}")
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    recorded = " ".join([*run.data.params.values(), *run.data.tags.values()])
    assert [s for s in secrets if s in recorded] == []
    assert REDACTED in run.data.tags["polylora.overrides"]
    assert run.data.tags["from_env"] == REDACTED
    assert (tmp_path / "run" / ".hydra" / "overrides.yaml").is_file()
