#!/usr/bin/env bash
# What --freeze-prefix does to accuracy: the training guide's comparison on the demo's data, from the dense
# teacher of scripts/label_free.sh (run that first, or pass its runs folder). Two DynamicViT students,
# 3 epochs each (the first with the backbone frozen, then trainable at 0.1x lr), with and without
# --freeze-prefix; each evaluated on the 10,000 test images into docs/results/freeze-prefix/NAME.json.
# Usage: bash scripts/freeze_prefix.sh [LABEL_FREE_RUNS] [RUNS]   (about 15 minutes on 2 CPU cores)
set -euo pipefail
TEACHER=${1:-runs/label-free}/teacher/last.pth
RUNS=${2:-runs/freeze-prefix}
DVIT=${DVIT:-.venv/bin/dynamicvit}
OUT=docs/results/freeze-prefix
[ -f "$TEACHER" ] || { echo "freeze_prefix.sh: no teacher at $TEACHER (run scripts/label_free.sh first)" >&2; exit 2; }
mkdir -p "$OUT"
D=(--model dvit_tiny_fmnist --data cluttered-fashion-mnist --canvas 48 --distractors 2 --img-size 48 --batch-size 128
   --train-limit 20000 --model-kwargs '{"depth":6}' --teacher-checkpoint "$TEACHER")
F=(--keep-rate 0.7 --prune-layers 1 2 3 --epochs 3 --lr 1e-3 --backbone-lr-scale 0.1 --freeze-backbone-epochs 1
   --ratio-weight 10 --warmup-epochs 0.1 --min-lr 1e-5 --overwrite)
$DVIT train "${D[@]}" "${F[@]}" --out "$RUNS/full-fine-tune"
$DVIT train "${D[@]}" "${F[@]}" --freeze-prefix --out "$RUNS/freeze-prefix"
$DVIT eval --checkpoint "$RUNS/full-fine-tune/last.pth" --save "$OUT/full-fine-tune.json"
$DVIT eval --checkpoint "$RUNS/freeze-prefix/last.pth" --save "$OUT/freeze-prefix.json"
