#!/usr/bin/env bash
# One run on N processes with DDP (the Hugging Face Trainer through accelerate): N GPUs, or N
# CPU processes with the gloo backend (hardware=cpu). Rank 0 alone logs to MLflow, saves the
# adapter and evaluates. All ranks share one run directory (set here, once). On GPUs,
# LAUNCHER=accelerate uses `accelerate launch --multi_gpu` instead of torchrun (same DDP;
# it reads an `accelerate config` if you made one). Not for sweeps: a sweep's
# trials are single-process jobs (see local_parallel.sh, parallel_workers.sh).
# Several nodes (torchrun): run the same command on every node with NNODES, NODE_RANK and
# RDZV_ENDPOINT=<host:port of node 0> (c10d rendezvous; under Slurm NNODES and NODE_RANK
# default to SLURM_NNODES and SLURM_NODEID). N is then the number of processes per node;
# RDZV_ID (default: SLURM_JOB_ID, else polylora) names the job, and the run directory
# defaults to outputs/ddp/<RDZV_ID> on every node.
#
#   launchers/ddp.sh 2 +experiment=baseline hardware=gpu
#   launchers/ddp.sh 2 +experiment=smoke hardware=cpu
#   LAUNCHER=accelerate launchers/ddp.sh 4 +experiment=baseline hardware=gpu
#   NNODES=2 NODE_RANK=0 RDZV_ENDPOINT=node01:29400 launchers/ddp.sh 4 +experiment=baseline hardware=gpu
source "$(dirname "$0")/_common.sh"
need_count "${1:-}"
N="$1"
shift
[ $# -gt 0 ] || usage
NNODES="${NNODES:-${SLURM_NNODES:-1}}"
NODE_RANK="${NODE_RANK:-${SLURM_NODEID:-0}}"
RDZV_ID="${RDZV_ID:-${SLURM_JOB_ID:-polylora}}"
need_count "$NNODES"
if [ "$NNODES" -gt 1 ]; then
  if [ -z "${RDZV_ENDPOINT:-}" ]; then
    echo "ddp.sh: NNODES=$NNODES needs RDZV_ENDPOINT=<host:port> of node 0 (the c10d" \
         "rendezvous every node joins), e.g. RDZV_ENDPOINT=node01:29400" >&2
    exit 2
  fi
  case "$NODE_RANK" in
    ''|*[!0-9]*) echo "ddp.sh: NODE_RANK must be 0..$((NNODES - 1)), got '$NODE_RANK'" >&2; exit 2 ;;
  esac
  RUN_DIR="${RUN_DIR:-outputs/ddp/$RDZV_ID}"
  nodes=(--nnodes "$NNODES" --node_rank "$NODE_RANK" --rdzv_backend c10d
         --rdzv_endpoint "$RDZV_ENDPOINT" --rdzv_id "$RDZV_ID")
else
  RUN_DIR="${RUN_DIR:-outputs/ddp/$(date +%Y-%m-%d_%H-%M-%S)}"
  nodes=(--standalone)
fi
case "${LAUNCHER:-torchrun}" in
  torchrun)
    run "$PY" -m torch.distributed.run "${nodes[@]}" --nproc_per_node "$N" \
      -m polylora "hydra.run.dir=$RUN_DIR" "$@" ;;
  accelerate)
    if [ "$NNODES" -gt 1 ]; then
      echo "ddp.sh: several nodes run through torchrun (the default LAUNCHER)" >&2
      exit 2
    fi
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
