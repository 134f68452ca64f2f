#!/usr/bin/env bash
# One run on N processes with DDP (the Hugging Face Trainer through accelerate): N GPUs, or N
# CPU processes with the gloo backend (hardware=cpu). Rank 0 alone logs to MLflow, saves the
# adapter and evaluates. All ranks share one run directory (set here, once). On GPUs,
# LAUNCHER=accelerate uses `accelerate launch --multi_gpu` instead of torchrun (same DDP;
# it reads an `accelerate config` if you made one). Not for sweeps: a sweep's
# trials are single-process jobs (see local_parallel.sh, parallel_workers.sh).
#
#   launchers/ddp.sh 2 +experiment=baseline hardware=gpu
#   launchers/ddp.sh 2 +experiment=smoke hardware=cpu
#   LAUNCHER=accelerate launchers/ddp.sh 4 +experiment=baseline hardware=gpu
source "$(dirname "$0")/_common.sh"
need_count "${1:-}"
N="$1"
shift
[ $# -gt 0 ] || usage
RUN_DIR="${RUN_DIR:-outputs/ddp/$(date +%Y-%m-%d_%H-%M-%S)}"
case "${LAUNCHER:-torchrun}" in
  torchrun)
    run "$PY" -m torch.distributed.run --standalone --nproc_per_node "$N" \
      -m polylora "hydra.run.dir=$RUN_DIR" "$@" ;;
  accelerate)
    for arg in "$@"; do
      if [ "$arg" = hardware=cpu ]; then
        echo "ddp.sh: accelerate launch runs several CPU processes only from an" \
             "'accelerate config' (MULTI_CPU + MPI); use the default torchrun (gloo) for CPU" >&2
        exit 2
      fi
    done
    run "$PY" -m accelerate.commands.launch --multi_gpu --num_processes "$N" \
      -m polylora "hydra.run.dir=$RUN_DIR" "$@" ;;
  *)
    echo "ddp.sh: LAUNCHER must be torchrun or accelerate, got ${LAUNCHER}" >&2
    exit 2 ;;
esac
