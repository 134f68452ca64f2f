"""docs/cluster.md's commands work as written: each launcher line is run with ``DRY_RUN=1``
(the recipe checks its arguments and prints the command it would run), each
``python -m polylora`` line composes its config (``--cfg hydra``); what needs a cluster or the
network (``srun``, ``pip``, a server on another host) is named here with the test that runs
its real counterpart on this machine."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

DOC = REPO / "docs" / "cluster.md"

#: Commands run for real elsewhere (the test named) or that need what CI lacks.
ELSEWHERE = {
    "make install": "the Makefile (CI runs it)",
    "pip install": "tests/test_install.py (the dev extra holds the cluster extra)",
    "export": "sets a variable for the lines after it",
    "polylora compare": "tests/record/test_tracking_server.py (compare over HTTP)",
    "srun": "needs Slurm; the two-node torchrun run is tests/test_ddp.py",
}


def commands() -> list[str]:
    """Every command line in the page's ``bash`` blocks (continuations joined, comments
    dropped)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", DOC.read_text(), re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                out.append(" ".join(line.split()))
    return out


def _env() -> dict[str, str]:
    env = {**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable, "HF_HUB_OFFLINE": "1",
           "OPTUNA_DB": "postgresql+psycopg://polylora@dbhost:5432/optuna",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def test_the_page_has_the_steps_from_laptop_to_cluster() -> None:
    lines = commands()
    assert any(c.startswith("export OPTUNA_DB=postgresql+psycopg://") for c in lines)
    assert any("parallel_workers.sh" in c and "storage=$OPTUNA_DB" in c for c in lines)
    assert any(c.startswith("HOST=0.0.0.0") and "mlflow_ui.sh" in c for c in lines)
    assert any("submitit_local" in c for c in lines)
    assert any("NNODES=2" in c and "RDZV_ENDPOINT" in c for c in lines)
    assert "docs/cluster.md" in (REPO / "README.md").read_text()


@pytest.mark.parametrize("command", [c for c in commands() if "launchers/" in c
                                     and not c.startswith(("srun", "export"))])
def test_launcher_lines_run_as_written(command: str) -> None:
    """``DRY_RUN=1``: the recipe parses its arguments and prints the command."""
    proc = subprocess.run(["bash", "-c", command], cwd=REPO, env=_env(), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    printed = proc.stdout
    assert "-m polylora" in printed or "-m mlflow server" in printed
    if "NNODES=2" in command:
        assert "--rdzv_backend c10d" in printed and "--nnodes 2" in printed
    if "mlflow_ui.sh" in command:
        assert "--artifacts-destination /shared/mlartifacts" in printed
        assert "--allowed-hosts" in printed


@pytest.mark.slow  # one polylora process per line (imports torch): ~5-25 s each
@pytest.mark.parametrize("command", [c for c in commands()
                                     if c.startswith(("python -m polylora",
                                                      ".venv/bin/python -m polylora"))])
def test_polylora_lines_compose(command: str, tmp_path: Path) -> None:
    """The command's config composes (``--cfg hydra`` in place of ``-m``: nothing runs)."""
    argv = shlex.split(command.replace("$OPTUNA_DB", _env()["OPTUNA_DB"])
                       .replace("<run_id>", "0123"))
    assert argv[1:3] == ["-m", "polylora"], argv
    argv = [sys.executable, "-m", "polylora", *[a for a in argv[3:] if a != "-m"]]
    proc = subprocess.run([*argv, "--cfg", "hydra"], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    if "submitit_local" in command:
        assert "LocalLauncher" in proc.stdout or "submitit" in proc.stdout


def test_every_other_line_is_accounted_for() -> None:
    covered = [c for c in commands()
               if not ("launchers/" in c and not c.startswith(("srun", "export")))
               and not c.startswith(("python -m polylora", ".venv/bin/python -m polylora"))]
    for command in covered:
        assert any(command.startswith(prefix) for prefix in ELSEWHERE), command
