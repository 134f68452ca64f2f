"""Screenshot the MLflow UI's training view of a tracking store with headless Chromium.

    python launchers/mlflow_screenshot.py --out mlflow.png                 # a fresh smoke run
    python launchers/mlflow_screenshot.py --sweep --out mlflow.png         # a fresh pruned sweep
    python launchers/mlflow_screenshot.py --store sqlite:////abs/mlflow.db --out ui.png

Without ``--store`` it trains the smoke experiment for two steps into a temporary store
first; with ``--sweep``, a three-trial learning-rate search with the median pruner instead
(one trial finishes, two are pruned), so the table shows the sweep's parent run with its
finished and pruned (KILLED, ``polylora.trial_state=PRUNED``) children. It starts
``mlflow server`` on a free local port in its own process group, opens
``#/experiments/<id>?workflowType=machine_learning`` (the runs table; MLflow 3 otherwise
opens on its GenAI view) in Debian's ``chromium``, and stops the server and its workers afterwards.
MLflow keeps the runs table's column choice in the browser, not on the server, so no default
column set can be shipped from here (nor can its MLflow Assistant side panel, open by
default, be closed): pick metric columns once under "Columns" in the UI.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--hide-scrollbars", "--window-size=1600,1000")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def smoke_run(store: str, workdir: Path) -> None:
    """Two training steps of the smoke experiment, logged to ``store``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-m", "polylora", "+experiment=smoke", "train.max_steps=2",
                    "train.eval_every=2", "train.save_every=2", "eval.enabled=false",
                    f"tracking.uri={store}", f"hydra.run.dir={workdir / 'run'}"],
                   cwd=workdir, env=env, check=True, capture_output=True, text=True)


#: A learning-rate grid with one rate that learns and two that cannot; the grid's seed puts
#: the one that learns first, so the median pruner (one startup trial) stops the other two.
SWEEP_ARGS = ("+experiment=smoke", "+hparams_search=lr", "train.max_steps=4",
              "train.eval_every=2", "train.save_every=4", "eval.enabled=false",
              "hydra/sweeper/sampler=grid", "hydra.sweeper.sampler.seed=5",
              "train.learning_rate=choice(3e-2,1e-9,2e-9)", "hydra/sweeper/pruner=median",
              "hydra.sweeper.pruner.n_startup_trials=1")


def sweep_run(store: str, workdir: Path) -> None:
    """The pruned learning-rate search of :data:`SWEEP_ARGS`, logged to ``store``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-m", "polylora", "-m", *SWEEP_ARGS,
                    f"tracking.uri={store}",
                    f"hydra.sweeper.storage=sqlite:///{workdir / 'optuna.db'}",
                    f"hydra.sweep.dir={workdir / 'multirun'}"],
                   cwd=workdir, env=env, check=True, capture_output=True, text=True)


def sweep_children(store: str) -> str:
    """``<parent run name>: <n> FINISHED, <m> KILLED (pruned)`` for each sweep in ``store``."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    lines = []
    for parent in (r for r in runs if r.data.tags.get("polylora.role") == "sweep"):
        children = [r for r in runs
                    if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        finished = sum(r.info.status == "FINISHED" for r in children)
        pruned = sum(r.data.tags.get("polylora.trial_state") == "PRUNED" for r in children)
        lines.append(f"{parent.info.run_name}: {finished} FINISHED, {pruned} PRUNED")
    return "; ".join(lines)


def experiment_id(store: str, name: str | None) -> str:
    """The id of experiment ``name`` (default: the one with the most recent run)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=store)
    if name is not None:
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise SystemExit(f"mlflow_screenshot: no experiment {name!r} in {store}")
        return str(exp.experiment_id)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise SystemExit(f"mlflow_screenshot: no runs in {store}")
    return str(runs[0].info.experiment_id)


@contextlib.contextmanager
def mlflow_server(store: str, port: int, log: Path) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1:``port`` until the block ends; its whole process group
    (gunicorn/uvicorn workers, huey consumers) is stopped afterwards."""
    with log.open("w") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", store,
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600  # a loaded machine takes minutes
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"mlflow_screenshot: mlflow server did not start; see {log}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


def screenshot(url: str, out: Path, profile: Path, budget_ms: int = 20000) -> None:
    """Load ``url`` in headless Chromium (``budget_ms`` of virtual time) and save a PNG."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("mlflow_screenshot: chromium not found (apt-get install chromium)")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:  # a loaded machine needs minutes (the page waits on the server, not virtual time)
        subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                        f"--virtual-time-budget={budget_ms}", f"--screenshot={out}", url],
                       check=True, capture_output=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"mlflow_screenshot: chromium did not finish {url} in 15 min") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("mlflow_ui.png"))
    parser.add_argument("--store", help="tracking URI (default: a fresh smoke run)")
    parser.add_argument("--experiment", help="experiment name (default: the latest run's)")
    parser.add_argument("--sweep", action="store_true",
                        help="without --store: a pruned three-trial sweep instead of one run")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temporary store and the server log")
    args = parser.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="polylora-mlflow-ui-")
    try:
        work = Path(tmp)
        store = args.store
        if store is None:
            store = f"sqlite:///{work / 'mlflow.db'}"
            (sweep_run if args.sweep else smoke_run)(store, work)
        sweeps = sweep_children(store)
        if sweeps:
            print(f"mlflow_screenshot: sweeps {sweeps}")
        exp = experiment_id(store, args.experiment)
        with mlflow_server(store, free_port(), work / "server.log") as url:
            page = f"{url}/#/experiments/{exp}?workflowType=machine_learning"
            screenshot(page, args.out.resolve(), work / "chromium")
    finally:
        if args.keep:
            print(f"mlflow_screenshot: kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"mlflow_screenshot: {args.out} ({page})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
