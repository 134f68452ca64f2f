#!/usr/bin/env bash
# Slurm: every trial (or multirun job) is a Slurm job submitted by the submitit launcher; the
# sweeper runs here (e.g. on the login node), asks hydra.sweeper.n_jobs trials at a time and
# waits for them. Needs `pip install '.[slurm]'`. Put MLflow where compute nodes can reach
# it (a server started with launchers/mlflow_ui.sh, or an absolute sqlite path on a shared
# disk) and keep the Optuna study here (sqlite:///optuna.db, only the sweeper touches it).
# Defaults: 1 GPU, 8 CPUs, 240 min per job; override any hydra.launcher.* on the command line.
#
#   MLFLOW_TRACKING_URI=http://login01:5000 launchers/slurm.sh +experiment=baseline \
#     +hparams_search=lr hydra.sweeper.n_trials=20 hydra.sweeper.n_jobs=4 hydra.launcher.partition=gpu
source "$(dirname "$0")/_common.sh"
[ $# -gt 0 ] || usage
if ! "$PY" -c "import hydra_plugins.hydra_submitit_launcher" 2>/dev/null; then
  echo "slurm.sh: hydra-submitit-launcher is not installed; run: pip install '.[slurm]'" >&2
  exit 3
fi
run "$PY" -m polylora -m hydra/launcher=submitit_slurm \
  "hydra.launcher.timeout_min=${TIMEOUT_MIN:-240}" hydra.launcher.gpus_per_node=1 \
  hydra.launcher.tasks_per_node=1 hydra.launcher.cpus_per_task=8 hardware=gpu "$@"
