# Sourced by the recipes in launchers/: which Python runs polylora, and how a command is run
# (DRY_RUN=1 prints it instead, shell-quoted, so a recipe can be checked without running it).
# shellcheck shell=bash
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${PYTHON:-}" ]; then
  PY="$PYTHON"
elif [ -x "$ROOT/.venv/bin/python" ]; then
  PY="$ROOT/.venv/bin/python"
else
  PY="python3"
fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"  # the embedded model needs no hub; 0 to allow it
export TOKENIZERS_PARALLELISM="${TOKENIZERS_PARALLELISM:-false}"

# The comment block at the top of the calling script, as usage text.
usage() {
  sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0" >&2
  exit 2
}

# run CMD...: exec it, or print it under DRY_RUN=1.
run() {
  if [ "${DRY_RUN:-0}" = 1 ]; then
    printf '%q ' "$@"
    echo
    exit 0
  fi
  exec "$@"
}

# True when the arguments select an Optuna search (so hydra.sweeper.n_jobs exists).
is_search() {
  local arg
  for arg in "$@"; do
    case "$arg" in
      +hparams_search=*|hparams_search=*|hydra/sweeper=*) return 0 ;;
    esac
  done
  return 1
}

# A positive integer first argument, or usage.
need_count() {
  case "${1:-}" in
    ''|*[!0-9]*|0) usage ;;
  esac
}
