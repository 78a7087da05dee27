#!/usr/bin/env bash
# Multi-node training on SLURM: one torchrun per node (srun), one process per GPU, torchrun's c10d
# rendezvous on the first node of the allocation. The release's 4-node ConvNeXt run:
#   sbatch --nodes 4 scripts/slurm_train.sh --config recipes/convnext_tiny.yaml --accum-steps 1 \
#       --data-dir /data/ILSVRC2012 --out runs/convnext_tiny
# Every argument goes to `dynamicvit train`. Resume a stopped job by submitting it again with --resume.
#SBATCH --job-name=dynamicvit
#SBATCH --nodes=4
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=80
#SBATCH --time=72:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail
HEAD_NODE=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
PORT=${PORT:-29500}
GPUS=${GPUS_PER_NODE:-$(nvidia-smi --list-gpus | wc -l)}
PYTHON=${PYTHON:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-8}
srun --kill-on-bad-exit=1 "$PYTHON" -m torch.distributed.run \
    --nnodes "$SLURM_JOB_NUM_NODES" --nproc_per_node "$GPUS" \
    --rdzv_id "$SLURM_JOB_ID" --rdzv_backend c10d --rdzv_endpoint "$HEAD_NODE:$PORT" \
    -m dynamicvit train "$@"
