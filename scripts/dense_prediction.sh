#!/usr/bin/env bash
# The dense-prediction guide's results: a dense and a sparse model per task, each evaluated with
# `eval --save` (docs/results/TASK/) and the pair timed with `bench --checkpoints --save`
# (docs/results/TASK-speed/); pictures into docs/segment/ and docs/detect/.
# Usage: bash scripts/dense_prediction.sh [segment|vit-segment|detect ...] [--runs DIR]
#   segment      FPN on a small ConvNeXt, Cluttered Fashion-MNIST scenes   (about 12 minutes on 2 cores)
#   vit-segment  FPN on a pruned ViT's restored tokens                     (about 25 minutes)
#   detect       torchvision FCOS on a small ConvNeXt, boxes               (about 40 minutes)
set -euo pipefail
DVIT=${DVIT:-.venv/bin/dynamicvit}
RUNS=runs/dense-prediction
TASKS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) RUNS=$2; shift 2 ;;
    segment|vit-segment|detect) TASKS+=("$1"); shift ;;
    *) echo "dense_prediction.sh: unknown argument $1 (segment, vit-segment, detect, --runs DIR)" >&2; exit 2 ;;
  esac
done
[ ${#TASKS[@]} -gt 0 ] || TASKS=(segment vit-segment detect)
mkdir -p docs/segment docs/detect
SMALL_CONVNEXT='{"dims":[24,48,96,192],"depths":[3,3,9,3]}'
FT=(--epochs 1 --lr 1e-3 --freeze-backbone-epochs 1 --warmup-epochs 0.1 --min-lr 1e-5 --overwrite)

evaluate() {  # TASK RUN VAL_LIMIT [PICTURE]: docs/results/TASK/RUN.json
  local picture=()
  [ $# -gt 3 ] && picture=(--picture "$4")
  mkdir -p "docs/results/$1"
  $DVIT eval --checkpoint "$RUNS/$2/last.pth" --val-limit "$3" --save "docs/results/$1/$2.json" "${picture[@]}" \
    > /dev/null
}

timed() {  # TASK DENSE_RUN SPARSE_RUN: docs/results/TASK-speed/TASK.json
  mkdir -p "docs/results/$1-speed"
  $DVIT bench --checkpoints "$RUNS/$2/last.pth" "$RUNS/$3/last.pth" --batch-size 32 --repeats 10 --device cpu \
    --save "docs/results/$1-speed/$1.json" > /dev/null
}

for task in "${TASKS[@]}"; do
  case "$task" in
    segment)
      S=(--task segment --model convnext_tiny --model-kwargs "$SMALL_CONVNEXT" --data cluttered-fashion-scenes
         --canvas 64 --train-limit 20000 --val-limit 2000 --batch-size 64)
      $DVIT train --dense "${S[@]}" --epochs 8 --lr 2e-3 --warmup-epochs 0.3 --min-lr 1e-5 --overwrite \
        --out "$RUNS/seg_dense"
      $DVIT train "${S[@]}" --teacher-checkpoint "$RUNS/seg_dense/last.pth" --keep-rate 0.6 "${FT[@]}" \
        --out "$RUNS/seg_sparse"
      evaluate segment seg_dense 10000
      evaluate segment seg_sparse 10000 docs/segment/masks.png
      timed segment seg_dense seg_sparse ;;
    vit-segment)
      V=(--task segment --model dvit_tiny_fmnist --img-size 64 --data cluttered-fashion-scenes --canvas 64
         --train-limit 10000 --val-limit 1000 --batch-size 64)
      $DVIT train --dense "${V[@]}" --epochs 6 --lr 2e-3 --warmup-epochs 0.3 --min-lr 1e-5 --overwrite \
        --out "$RUNS/vitseg_dense"
      $DVIT train "${V[@]}" --teacher-checkpoint "$RUNS/vitseg_dense/last.pth" --keep-rate 0.8 \
        --prune-layers 1 2 3 --ratio-weight 10 --backbone-lr-scale 0.1 "${FT[@]}" --epochs 2 \
        --out "$RUNS/vitseg_sparse"
      evaluate vit-segment vitseg_dense 5000
      evaluate vit-segment vitseg_sparse 5000 docs/segment/vit_masks.png
      timed vit-segment vitseg_dense vitseg_sparse ;;
    detect)
      D=(--task detect --model convnext_tiny --model-kwargs "$SMALL_CONVNEXT" --data cluttered-fashion-boxes
         --canvas 64 --train-limit 10000 --val-limit 1000 --batch-size 32)
      $DVIT train --dense "${D[@]}" --epochs 6 --lr 2e-3 --warmup-epochs 0.3 --min-lr 1e-5 --overwrite \
        --out "$RUNS/det_dense"
      $DVIT train "${D[@]}" --teacher-checkpoint "$RUNS/det_dense/last.pth" --keep-rate 0.6 "${FT[@]}" \
        --out "$RUNS/det_sparse"
      evaluate detect det_dense 5000
      evaluate detect det_sparse 5000 docs/detect/boxes.png
      timed detect det_dense det_sparse ;;
  esac
done
