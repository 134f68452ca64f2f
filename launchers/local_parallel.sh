#!/usr/bin/env bash
# Local, parallel: N jobs at a time in joblib worker processes, one GPU each. Job number n sees
# GPU POLYLORA_GPUS[n mod count] through CUDA_VISIBLE_DEVICES (POLYLORA_GPUS defaults to every
# visible CUDA device; on a CPU-only machine jobs just run side by side). For a search, the
# sweeper asks N trials at a time and waits for the slowest of each batch before the next
# (see parallel_workers.sh for the way around that).
#
#   launchers/local_parallel.sh 2 +experiment=baseline +hparams_search=lr hydra.sweeper.n_trials=10
#   POLYLORA_GPUS=0,1,2,3 launchers/local_parallel.sh 4 +experiment=baseline seed=42,123,456,789
source "$(dirname "$0")/_common.sh"
need_count "${1:-}"
N="$1"
shift
[ $# -gt 0 ] || usage
extra=(hydra/launcher=joblib_gpus "hydra.launcher.n_jobs=$N")
if is_search "$@"; then
  extra+=("hydra.sweeper.n_jobs=$N")
fi
run "$PY" -m polylora -m "${extra[@]}" "$@"
