#!/usr/bin/env bash
# The MLflow UI on the tracking store: each sweep is a parent run (search space, best value,
# summary table) whose trials are nested under it; seed runs share the polylora.group tag
# (group by it in the UI). HOST=0.0.0.0 serves it to other machines (e.g. Slurm compute
# nodes: set MLFLOW_TRACKING_URI=http://<this host>:<port> for the sweep).
#
#   launchers/mlflow_ui.sh                      # sqlite:///mlflow.db on 127.0.0.1:5000
#   launchers/mlflow_ui.sh sqlite:////abs/path/mlflow.db 5001
source "$(dirname "$0")/_common.sh"
STORE="${1:-${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db}}"
case "$STORE" in
  http://*|https://*)
    echo "mlflow_ui.sh: $STORE is already a server; open it in a browser" >&2
    exit 2 ;;
esac
run "$PY" -m mlflow server --backend-store-uri "$STORE" --host "${HOST:-127.0.0.1}" \
  --port "${2:-5000}"
