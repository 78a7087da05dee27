#!/usr/bin/env bash
# The checks that need a CUDA machine, in one run: the CUDA tests, a short 1-GPU training with --amp
# --compile, a torchrun NCCL run with one process per visible GPU, and `bench` of DeiT-S / ConvNeXt-T /
# Swin-T, dense vs rho 0.7 at batch 1, 64 and 256 (CUDA-event timing), written to one JSON per model.
# Usage: bash scripts/gpu_check.sh [OUT_DIR]   (default runs/gpu-check; PYTHON=python3 to run from source)
set -euo pipefail
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${1:-runs/gpu-check}
if ! "$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check.sh: no CUDA device visible to $PYTHON; run it on a GPU machine" >&2
    exit 2
fi
mkdir -p "$OUT"
GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
"$PYTHON" -m pytest -q -m cuda tests 2>&1 | tee "$OUT/tests.log"
SMALL=(--model vit_tiny_patch16_224 --model-kwargs '{"patch_size": 7, "embed_dim": 192, "depth": 6, "num_heads": 3}'
       --data cluttered-fashion-mnist --canvas 56 --img-size 56 --train-limit 20000 --val-limit 2000
       --batch-size 128 --warmup-epochs 0.1 --workers 4 --no-progress)
"$PYTHON" -m dynamicvit train --dense "${SMALL[@]}" --epochs 1 --lr 2e-3 --amp --compile --overwrite \
    --out "$OUT/teacher" | tee "$OUT/train-1gpu.log"
"$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$GPUS" -m dynamicvit train "${SMALL[@]}" \
    --teacher-checkpoint "$OUT/teacher/last.pth" --epochs 1 --amp --overwrite --out "$OUT/ddp" \
    | tee "$OUT/train-nccl.log"
for MODEL in deit_small_patch16_224 convnext_tiny swin_tiny_patch4_window7_224; do
    "$PYTHON" -m dynamicvit bench --model "$MODEL" --keep-rate 0.7 --batch-size 1 64 256 --device cuda \
        --save "$OUT/bench-$MODEL.json"
done
echo "gpu_check.sh: all checks ran; results in $OUT"
