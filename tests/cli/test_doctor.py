"""``polylora doctor``: one line per check with ok/warn/fail and the fix, exit 1 only when
something required fails (a real MLflow store, the installed packages of this machine)."""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections import namedtuple
from pathlib import Path

import pytest

from polylora.cli import doctor
from polylora.cli.main import main

CHECKS = ["python", "torch", "bf16", "cuda", "bitsandbytes", "system metrics", "jail",
          "embedded model", "tracking store", "hydra plugins", "disk"]
LINE = re.compile(r"^(ok|warn|fail) +(\S.*?) {2,}\S")


def _doctor(capsys: pytest.CaptureFixture[str], uri: str) -> tuple[int, dict[str, str]]:
    code = main(["doctor", "--tracking-uri", uri])
    out = capsys.readouterr().out.splitlines()
    lines = {}
    for line in out[:-1]:
        match = LINE.match(line)
        assert match, line
        lines[match.group(2).strip()] = line
    assert out[-1].startswith(f"polylora doctor: {len(CHECKS)} checks")
    return code, lines


def test_every_check_reports_one_line(capsys: pytest.CaptureFixture[str],
                                      tmp_path: Path) -> None:
    code, lines = _doctor(capsys, f"sqlite:///{tmp_path}/new/mlflow.db")
    assert list(lines) == CHECKS
    assert lines["tracking store"].startswith("ok ")
    assert "(created by the first run)" in lines["tracking store"]
    assert "polylora_optuna sweeper" in lines["hydra plugins"]
    assert not (tmp_path / "new").exists()  # checking creates nothing
    failed = [name for name, line in lines.items() if line.startswith("fail")]
    assert code == (1 if failed else 0)
    for line in lines.values():
        if not line.startswith("ok"):
            assert "; fix: " in line  # every warning and failure says what to do


def test_an_unwritable_store_fails_with_the_fix(capsys: pytest.CaptureFixture[str],
                                               tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, lines = _doctor(capsys, f"sqlite:///{blocker}/mlflow.db")
    assert code == 1
    assert lines["tracking store"].startswith("fail")
    assert "fix: set tracking.uri (or MLFLOW_TRACKING_URI) to a writable place" in lines[
        "tracking store"]


def test_a_store_of_another_mlflow_schema_fails(mlflow_uri: str, tmp_path: Path) -> None:
    import mlflow

    mlflow.MlflowClient(tracking_uri=mlflow_uri).search_experiments()  # the store exists
    current = doctor.check_tracking_store(mlflow_uri)
    assert current.status == doctor.OK and "writable" in current.found
    old = tmp_path / "old.db"
    shutil.copy(mlflow_uri[len("sqlite:///"):], old)
    with sqlite3.connect(old) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'a1b2c3d4e5f6'")
    check = doctor.check_tracking_store(f"sqlite:///{old}")
    assert check.status == doctor.FAIL and "schema a1b2c3d4e5f6" in check.found
    assert check.fix == f"back it up, then: mlflow db upgrade sqlite:///{old}"
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"")
    assert doctor.check_tracking_store(f"sqlite:///{junk}").status == doctor.FAIL


def test_disk_space_thresholds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    usage = namedtuple("usage", "total used free")
    for free_gb, status in [(0.5, doctor.FAIL), (3.0, doctor.WARN), (50.0, doctor.OK)]:
        monkeypatch.setattr(doctor.shutil, "disk_usage",
                            lambda _p, f=free_gb: usage(100 * 2**30, 0, int(f * 2**30)))
        assert doctor.check_disk([tmp_path]).status == status


def test_a_crashing_check_is_a_failure_line(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    def broken() -> doctor.Check:
        raise RuntimeError("boom")

    monkeypatch.setattr(doctor, "check_python", broken)
    checks = doctor.run_checks(f"sqlite:///{tmp_path}/m.db", [tmp_path])
    assert checks[0].status == doctor.FAIL and "RuntimeError: boom" in checks[0].found
