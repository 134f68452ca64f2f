#!/usr/bin/env bash
# N sweeper processes on one sqlite study (the Optuna maintainers' workaround for n_jobs
# batches that wait for their slowest trial): each worker asks for its next trial as soon as
# its previous one ends; together they stop at n_trials. Worker i sees GPU POLYLORA_GPUS[i]
# (default: GPU i mod the number of GPUs nvidia-smi lists; none on a CPU-only machine).
# Logs: $LOG_DIR/worker-<i>.log (default multirun/workers). Ctrl-C stops every worker; the
# same command later resumes the study (trials of dead workers are run again).
#
#   launchers/parallel_workers.sh 4 +experiment=baseline +hparams_search=lr hydra.sweeper.n_trials=40
source "$(dirname "$0")/_common.sh"
need_count "${1:-}"
N="$1"
shift
[ $# -gt 0 ] || usage
is_search "$@" || { echo "parallel_workers.sh: needs a search (+hparams_search=...)" >&2; exit 2; }

gpus=()
if [ -n "${POLYLORA_GPUS:-}" ]; then
  IFS=, read -r -a gpus <<< "$POLYLORA_GPUS"
elif command -v nvidia-smi >/dev/null 2>&1 && count="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')" \
    && [ "$count" -gt 0 ]; then
  for ((g = 0; g < count; g++)); do gpus+=("$g"); done
fi

LOG_DIR="${LOG_DIR:-multirun/workers}"
pids=()
cleanup() { [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup INT TERM
[ "${DRY_RUN:-0}" = 1 ] || mkdir -p "$LOG_DIR"
for ((i = 0; i < N; i++)); do
  envs=()
  if [ ${#gpus[@]} -gt 0 ]; then
    envs=("CUDA_VISIBLE_DEVICES=${gpus[$((i % ${#gpus[@]}))]}")
  fi
  cmd=(env "${envs[@]}" "$PY" -m polylora -m hydra.sweeper.n_jobs=1 "$@")
  if [ "${DRY_RUN:-0}" = 1 ]; then
    printf '%q ' "${cmd[@]}"
    echo
    continue
  fi
  "${cmd[@]}" > "$LOG_DIR/worker-$i.log" 2>&1 &
  pids+=($!)
  echo "worker $i: pid ${pids[-1]}${envs[*]:+, ${envs[*]}}, log $LOG_DIR/worker-$i.log"
  [ "$i" -gt 0 ] || sleep "${STAGGER_S:-2}"  # the first worker creates the study and parent run
done
rc=0
for pid in "${pids[@]}"; do
  wait "$pid" || rc=$?
done
exit "$rc"
