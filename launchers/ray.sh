#!/usr/bin/env bash
# Ray: every trial (or multirun job) is a Ray task with one GPU, on this machine or on the
# cluster at RAY_ADDRESS (default: start a local Ray). Needs the hydra-ray-launcher plugin
# (`pip install '.[ray]'`), which is not part of the default install; the recipe says so
# and stops if it is missing.
#
#   launchers/ray.sh +experiment=baseline +hparams_search=lr hydra.sweeper.n_trials=20 hydra.sweeper.n_jobs=4
#   RAY_ADDRESS=auto launchers/ray.sh +experiment=baseline seed=42,123,456
source "$(dirname "$0")/_common.sh"
[ $# -gt 0 ] || usage
if ! "$PY" -c "import hydra_plugins.hydra_ray_launcher" 2>/dev/null; then
  echo "ray.sh: the Ray launcher plugin is not installed (pip install '.[ray]', i.e." \
       "hydra-ray-launcher + ray); without it use launchers/local_parallel.sh or" \
       "launchers/slurm.sh" >&2
  exit 3
fi
args=(hydra/launcher=ray "++hydra.launcher.ray.remote.num_gpus=${GPUS_PER_TRIAL:-1}")
if [ -n "${RAY_ADDRESS:-}" ]; then
  args+=("++hydra.launcher.ray.init.address=$RAY_ADDRESS")
else
  # hydra-ray-launcher 1.2.2 sets a local Ray's object store size with setdefault, which a
  # struct config refuses under OmegaConf 2.4 (Hydra 1.4): give the size explicitly.
  args+=("++hydra.launcher.ray.init.object_store_memory=${RAY_OBJECT_STORE_BYTES:-78643200}")
fi
run "$PY" -m polylora -m "${args[@]}" "$@"
