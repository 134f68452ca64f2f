"""``make optuna-dashboard``'s command: optuna-dashboard serves a sweep's study store, its
pruned trial included (a real sqlite study, a real server process, stopped afterwards)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from helpers import REPO


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_makefile_serves_the_sweep_store() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "OPTUNA_STORAGE ?= sqlite:///optuna.db" in makefile
    assert "$(BIN)/optuna-dashboard $(OPTUNA_STORAGE) --host 127.0.0.1" in makefile


@pytest.mark.slow
def test_dashboard_lists_a_study_with_a_pruned_trial(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="smoke-lr", storage=storage)
    done = study.ask()
    done.report(1.0, 2)
    study.tell(done, 1.0)
    pruned = study.ask()
    pruned.report(3.0, 2)
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    port = _free_port()
    binary = Path(sys.executable).with_name("optuna-dashboard")
    proc = subprocess.Popen([str(binary), storage, "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        studies = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies",
                                            timeout=5) as reply:
                    studies = json.loads(reply.read())
                break
            except OSError:
                time.sleep(0.5)
        assert studies is not None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
        (summary,) = studies["study_summaries"]
        assert summary["study_name"] == "smoke-lr"
        study_id = summary["study_id"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{study_id}",
                                    timeout=30) as reply:
            detail = json.loads(reply.read())
        assert sorted(t["state"] for t in detail["trials"]) == ["Complete", "Pruned"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()
