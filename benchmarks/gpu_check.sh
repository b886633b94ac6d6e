#!/usr/bin/env bash
# The GPU check in one command, bounded to 8 minutes: the README's unverified GPU topologies (one GPU, FSDP) and
# bf16 training throughput / MFU of the embedded model and a bert-base-sized one, packed vs length buckets.
#   bash benchmarks/gpu_check.sh          -> benchmarks/results/gpu_check.json
# Needs a CUDA GPU and the project's requirements with a CUDA build of torch.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
[ -x "$python" ] || python=python3
"$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'error: no CUDA GPU here')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
timeout 480 "$python" benchmarks/gpu_check.py --budget_seconds 420 "$@"
