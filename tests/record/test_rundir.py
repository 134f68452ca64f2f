"""Run directories: same-second runs get their own, a live holder's directory is refused, a
dead holder's directory can be taken (resume)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import REPO, runs_of

from polylora.errors import ConfigError
from polylora.record import rundir
from polylora.run import pipeline

HOLD = (
    "import sys, time\n"
    "from polylora.record.rundir import claim\n"
    "with claim(sys.argv[1]):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(120)\n"
)


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[Callable[[Path], subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []

    def start(run_dir: Path) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(run_dir)],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_live_holder_is_refused_and_a_dead_one_is_not(
    tmp_path: Path, holder: Callable[[Path], subprocess.Popen[str]]
) -> None:
    run_dir = tmp_path / "run"
    proc = holder(run_dir)
    busy = rf"in use by a live process \(pid {proc.pid}\)"
    with pytest.raises(ConfigError, match=busy), rundir.claim(run_dir):
        pass
    proc.kill()
    proc.wait()
    with rundir.claim(run_dir) as claimed:  # the lock died with its process
        assert claimed == run_dir
        assert (run_dir / rundir.LOCK_FILE).read_text().strip() == str(os.getpid())


def test_pipeline_refuses_a_run_dir_in_use_and_starts_no_mlflow_run(
    tmp_path: Path, compose_cfg: Callable[..., object], holder: Callable[[Path], object]
) -> None:
    run_dir = tmp_path / "busy"
    holder(run_dir)
    cfg = compose_cfg(["+experiment=smoke", "train.enabled=false"], output_dir=run_dir)
    with pytest.raises(ConfigError, match="in use by a live process"):
        pipeline.execute(cfg)
    assert runs_of(cfg) == []


def test_runs_started_in_the_same_second_get_different_directories(tmp_path: Path) -> None:
    """Two real entry points whose run dir differs only by the unique suffix (the timestamp
    part is fixed, as for two runs in one second); each fails fast on a config error."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    command = [
        sys.executable,
        "-m",
        "polylora",
        "+experiment=smoke",
        "lora.rank=0",  # a quick, clean config error after Hydra made the run dir
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"hydra.run.dir={tmp_path}/outputs/same-second-${{polylora_unique:}}",
    ]
    procs = [
        subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert "lora.rank must be a positive integer" in err
    dirs = sorted((tmp_path / "outputs").iterdir())
    assert len(dirs) == 2, dirs
    assert all(d.name.startswith("same-second-") for d in dirs)


def test_the_default_run_and_sweep_dirs_carry_the_suffix() -> None:
    text = (REPO / "polylora" / "conf" / "config.yaml").read_text()
    assert text.count("${polylora_unique:}") == 2
    other = subprocess.run(
        [sys.executable, "-c",
         "from polylora.record.rundir import unique_suffix; print(unique_suffix())"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    ).stdout.strip()
    assert other and other != rundir.unique_suffix()
    assert rundir.unique_suffix() == rundir.unique_suffix()
