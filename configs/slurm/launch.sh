#!/usr/bin/env bash
# Runs once per node of a SLURM allocation (started by `srun` in finetune.sbatch): one `accelerate launch` per node,
# which starts one process per GPU of the node. Every node derives the same topology from SLURM's variables:
#   machine rank      <- SLURM_NODEID (0 on the first node of the allocation)
#   machines          <- SLURM_NNODES
#   main address      <- the first host of SLURM_JOB_NODELIST (expanded by `scontrol show hostnames`)
#   processes         <- machines x GPUs per node (GPUS_PER_NODE, else SLURM_GPUS_ON_NODE, else 1)
# Usage: launch.sh SCRIPT [ARGS...], e.g. launch.sh run_ner.py configs/ner/conll2003.yaml --bf16
# FINETUNE_DRY_RUN=1 prints the command instead of running it (what the tests check).
set -euo pipefail

if [ "$#" -lt 1 ]; then
  echo "usage: launch.sh SCRIPT [ARGS...]   (run it through srun inside an allocation)" >&2
  exit 2
fi
for variable in SLURM_JOB_NODELIST SLURM_NNODES SLURM_NODEID; do
  if [ -z "${!variable:-}" ]; then
    echo "error: $variable is not set: run this through srun inside a SLURM allocation (see finetune.sbatch)." >&2
    exit 2
  fi
done

# The whole list is read before the first host is taken: `| head -n 1` would close the pipe early, and with
# pipefail a long host list then fails the script with SIGPIPE (exit 141), at random.
hosts=$(scontrol show hostnames "$SLURM_JOB_NODELIST")
main_address=${hosts%%$'\n'*}
if [ -z "$main_address" ]; then
  echo "error: scontrol show hostnames $SLURM_JOB_NODELIST printed no host." >&2
  exit 2
fi
gpus_per_node=${GPUS_PER_NODE:-${SLURM_GPUS_ON_NODE:-1}}
gpus_per_node=${gpus_per_node%%(*}          # SLURM may write "4(IDX:0-3)"
processes=$((SLURM_NNODES * gpus_per_node))
port=${MAIN_PROCESS_PORT:-29500}

command=(accelerate launch --multi_gpu
         --num_machines "$SLURM_NNODES" --machine_rank "$SLURM_NODEID" --num_processes "$processes"
         --main_process_ip "$main_address" --main_process_port "$port" --rdzv_backend static
         --mixed_precision no "$@")
if [ "${FINETUNE_DRY_RUN:-0}" = "1" ]; then
  printf '%q ' "${command[@]}"
  printf '\n'
else
  exec "${command[@]}"
fi
