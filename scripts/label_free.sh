#!/usr/bin/env bash
# The training guide's label-free comparison on the demo's data: a dense teacher, then one epoch of
# DynamicViT fine-tuning (rho 0.7, backbone frozen) with labels and without, and the same recipe for an
# encoder without classifier (k-NN top-1). Each evaluation writes docs/results/label-free/NAME.json.
# Usage: bash scripts/label_free.sh [RUNS_DIR]   (about 15 minutes on 2 CPU cores)
set -euo pipefail
RUNS=${1:-runs/label-free}
OUT=docs/results/label-free
DVIT=${DVIT:-.venv/bin/dynamicvit}
mkdir -p "$OUT"
D=(--model dvit_tiny_fmnist --data cluttered-fashion-mnist --canvas 48 --distractors 2 --img-size 48 --batch-size 128 --train-limit 20000)
S=(--keep-rate 0.7 --prune-layers 1 2 3 --epochs 1 --lr 1e-3 --backbone-lr-scale 0.1 --freeze-backbone-epochs 1 --ratio-weight 10 --warmup-epochs 0.1 --min-lr 1e-5)
TEACHER="$RUNS/teacher/last.pth"
$DVIT train --dense "${D[@]}" --model-kwargs '{"depth":6}' --epochs 4 --lr 2e-3 --warmup-epochs 0.2 --min-lr 1e-5 --out "$RUNS/teacher"
$DVIT train "${D[@]}" --model-kwargs '{"depth":6}' --teacher-checkpoint "$TEACHER" "${S[@]}" --out "$RUNS/labels"
$DVIT train "${D[@]}" --model-kwargs '{"depth":6}' --teacher-checkpoint "$TEACHER" "${S[@]}" --no-labels --out "$RUNS/no-labels"
$DVIT eval --checkpoint "$TEACHER" --save "$OUT/teacher.json"
$DVIT eval --checkpoint "$RUNS/labels/last.pth" --save "$OUT/labels.json"
$DVIT eval --checkpoint "$RUNS/no-labels/last.pth" --save "$OUT/no-labels.json"
$DVIT train "${D[@]}" --model-kwargs '{"depth":6,"num_classes":0}' --teacher-checkpoint "$TEACHER" "${S[@]}" --out "$RUNS/encoder"
$DVIT eval --checkpoint "$TEACHER" --model-kwargs '{"depth":6,"num_classes":0}' --save "$OUT/dense-encoder.json"
$DVIT eval --checkpoint "$RUNS/encoder/last.pth" --save "$OUT/encoder.json"
