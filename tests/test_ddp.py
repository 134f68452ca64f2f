"""Two-process DDP training on CPU (gloo) through ``launchers/ddp.sh 2 +experiment=smoke
hardware=cpu`` (``torchrun --standalone --nproc_per_node 2 -m polylora ...``): it runs, rank 0
alone records to MLflow and saves, and the adapter is the same kind as a one-process run's
(same files, config, tensor names and shapes; loadable by ``PeftModel``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO

pytestmark = pytest.mark.slow  # two training runs, one of them two processes: ~40-60 s

FAST = ["+experiment=smoke", "hardware=cpu", "train.max_steps=4", "train.eval_every=2",
        "train.save_every=2", "eval.enabled=false"]


def _run(cmd: list[str], cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "PYTHON": sys.executable,
        **extra,
    }
    for key in ("MLFLOW_TRACKING_URI", "POLYLORA_PARENT_RUN_ID", "RANK", "WORLD_SIZE",
                "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=400)


def _tensors(adapter: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with safe_open(str(adapter / "adapter_model.safetensors"), "pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118


def test_torchrun_two_processes_trains_the_same_kind_of_adapter(tmp_path: Path) -> None:
    import mlflow
    import torch
    from omegaconf import OmegaConf
    from peft import PeftModel
    from safetensors.torch import load_file

    from polylora.model import loading as models

    single = _run([sys.executable, "-m", "polylora", *FAST,
                   f"tracking.uri=sqlite:///{tmp_path}/single.db",
                   f"hydra.run.dir={tmp_path}/single"], tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    ddp = _run(["bash", str(REPO / "launchers" / "ddp.sh"), "2", *FAST,
                f"tracking.uri=sqlite:///{tmp_path}/ddp.db"], tmp_path,
               RUN_DIR=str(tmp_path / "ddp"))
    assert ddp.returncode == 0, ddp.stderr[-5000:]

    one, two = tmp_path / "single" / "adapter", tmp_path / "ddp" / "adapter"
    for adapter in (one, two):
        assert {"adapter_model.safetensors", "adapter_config.json"} <= {
            p.name for p in adapter.iterdir()}
    conf_one, conf_two = (json.loads((a / "adapter_config.json").read_text())
                          for a in (one, two))
    for key in ("peft_type", "r", "lora_alpha", "lora_dropout", "task_type"):
        assert conf_one.get(key) == conf_two.get(key), key
    assert sorted(conf_one["target_modules"]) == sorted(conf_two["target_modules"])
    assert _tensors(one) == _tensors(two)

    # trained: LoRA B starts at zero; after DDP training it is not
    weights = load_file(str(two / "adapter_model.safetensors"))
    assert any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in weights.items())

    # loadable by PeftModel on the base model the run used
    cfg = OmegaConf.load(tmp_path / "ddp" / "config.yaml")
    base, _ = models.load_base_model(cfg.model, cfg.hardware)
    peft_model = PeftModel.from_pretrained(base, str(two))
    loaded = {k: v for k, v in peft_model.state_dict().items() if "lora_" in k}
    assert len(loaded) == len(weights)
    for name, value in weights.items():
        match = [v for k, v in loaded.items() if k.replace(".default", "") == name]
        assert len(match) == 1 and torch.equal(match[0], value), name

    # only rank 0 recorded: one MLflow run, finished, with the training metrics
    def runs(db: str) -> list[object]:
        client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/{db}")
        exp = client.get_experiment_by_name("polylora")
        return client.search_runs([exp.experiment_id])

    (run_ddp,) = runs("ddp.db")
    (run_one,) = runs("single.db")
    assert run_ddp.info.status == "FINISHED"
    assert run_ddp.data.metrics["train/steps"] == run_one.data.metrics["train/steps"] == 4
    # eval loss is per-token CE in both (not divided by the number of ranks)
    assert run_ddp.data.metrics["eval/loss"] == pytest.approx(
        run_one.data.metrics["eval/loss"], rel=0.05)


def test_two_torchrun_agents_as_two_nodes_train_one_run(tmp_path: Path) -> None:
    """``NNODES=2 NODE_RANK=i RDZV_ENDPOINT=127.0.0.1:<port> launchers/ddp.sh 1 ...`` twice on
    this machine: two "nodes" of one CPU process each meet at a c10d rendezvous and train one
    run: one adapter, one MLflow run, each training curve logged once per step (rank 0
    only)."""
    import mlflow
    from servers import free_port

    endpoint = f"127.0.0.1:{free_port()}"
    store = f"sqlite:///{tmp_path}/nodes.db"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1", "PYTHON": sys.executable,
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "NNODES": "2", "RDZV_ENDPOINT": endpoint, "RDZV_ID": "two-nodes",
           "RUN_DIR": str(tmp_path / "run")}
    for key in ("MLFLOW_TRACKING_URI", "POLYLORA_PARENT_RUN_ID", "RANK", "WORLD_SIZE",
                "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_NNODES", "SLURM_NODEID"):
        env.pop(key, None)
    agents = [subprocess.Popen(["bash", str(REPO / "launchers" / "ddp.sh"), "1", *FAST,
                                f"tracking.uri={store}"],
                               cwd=tmp_path, env={**env, "NODE_RANK": str(rank)},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
              for rank in (0, 1)]
    try:
        outputs = [a.communicate(timeout=1500)[0] for a in agents]
    finally:
        for a in agents:
            if a.poll() is None:
                a.kill()
                a.wait(timeout=60)
    assert [a.returncode for a in agents] == [0, 0], [o[-3000:] for o in outputs]

    adapter = tmp_path / "run" / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()
    client = mlflow.MlflowClient(tracking_uri=store)
    (run,) = client.search_runs([client.get_experiment_by_name("polylora").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params.get("train.max_steps") == "4"
    assert run.data.metrics["train/steps"] == 4
    # rank 0 alone logs: the training curves have one point per logging step (every 2 of 4);
    # a second logging rank would double them (or open a second run)
    for key in ("train/loss", "train/learning_rate", "train/grad_norm"):
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        assert steps == [2, 4], f"{key} logged at steps {steps}"
