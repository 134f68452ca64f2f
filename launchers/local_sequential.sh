#!/usr/bin/env bash
# Local, sequential: trials (or multirun jobs) one after another in this process (Hydra's
# basic launcher). Re-running the same search command continues its study up to n_trials.
#
#   launchers/local_sequential.sh +experiment=baseline +hparams_search=lr hydra.sweeper.n_trials=10
#   launchers/local_sequential.sh +experiment=baseline seed=42,123,456
source "$(dirname "$0")/_common.sh"
[ $# -gt 0 ] || usage
run "$PY" -m polylora -m "$@"
