#!/usr/bin/env bash
# The MLflow UI and tracking server on a store: each sweep is a parent run (search space, best
# value, summary table) whose trials are nested under it; seed runs share the polylora.group
# tag (group by it in the UI). Artifacts are proxied: clients upload them over HTTP and the
# server writes them under ARTIFACTS (default ./mlartifacts; an s3://... or a shared path
# works too), so compute nodes never write to their own disks.
# HOST=0.0.0.0 serves it to other machines (e.g. Slurm compute nodes: set
# MLFLOW_TRACKING_URI=http://<this host>:<port> for the sweep). MLflow 3 refuses Host headers
# it does not know (DNS-rebinding protection): ALLOWED_HOSTS (comma-separated, `name:*` for any
# port) defaults to localhost, this machine's names and the private address ranges.
# MLFLOW_SERVER_WORKERS sets the number of server processes (MLflow's default: 4).
#
#   launchers/mlflow_ui.sh                      # sqlite:///mlflow.db on 127.0.0.1:5000
#   launchers/mlflow_ui.sh sqlite:////abs/path/mlflow.db 5001
#   HOST=0.0.0.0 ARTIFACTS=/shared/mlartifacts \
#     launchers/mlflow_ui.sh postgresql+psycopg://mlflow@dbhost/mlflow 5000
source "$(dirname "$0")/_common.sh"
STORE="${1:-${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db}}"
PORT="${2:-5000}"
case "$STORE" in
  http://*|https://*)
    echo "mlflow_ui.sh: $STORE is already a server; open it in a browser" >&2
    exit 2 ;;
esac
if [ -z "${ALLOWED_HOSTS:-}" ]; then
  hosts=(localhost 127.0.0.1 "$(hostname)")
  fqdn="$(hostname -f 2>/dev/null || true)"
  [ -z "$fqdn" ] || [ "$fqdn" = "$(hostname)" ] || hosts+=("$fqdn")
  ALLOWED_HOSTS=""
  for h in "${hosts[@]}"; do ALLOWED_HOSTS+="$h,$h:*,"; done
  ALLOWED_HOSTS+="10.*,192.168.*,172.1[6-9].*,172.2[0-9].*,172.3[01].*"
fi
workers=()
[ -z "${MLFLOW_SERVER_WORKERS:-}" ] || workers=(--workers "$MLFLOW_SERVER_WORKERS")
run "$PY" -m mlflow server --backend-store-uri "$STORE" --host "${HOST:-127.0.0.1}" \
  --port "$PORT" --artifacts-destination "${ARTIFACTS:-./mlartifacts}" \
  --allowed-hosts "$ALLOWED_HOSTS" "${workers[@]}"
