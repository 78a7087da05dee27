#!/usr/bin/env bash
# The zoo guide's speed tables: LV-ViT (docs/results/bench-lvvit/) and today's ViT families
# (docs/results/bench-backbones/), dense against rho 0.7 at batch 32 with the sliced-token limit, interleaved in
# one process per command. Usage: bash scripts/backbone_speed.sh   (about 30 minutes on 2 CPU cores)
set -euo pipefail
DVIT=${DVIT:-.venv/bin/dynamicvit}
mkdir -p docs/results/bench-lvvit docs/results/bench-backbones
B=(--keep-rate 0.7 --batch-size 32 --device cpu)
$DVIT bench --model lvvit_s "${B[@]}" --repeats 5 --save docs/results/bench-lvvit/lvvit_s.json > /dev/null
$DVIT bench --model lvvit_m "${B[@]}" --repeats 5 --save docs/results/bench-lvvit/lvvit_m.json > /dev/null
$DVIT bench --models vit_small_patch14_dinov2 vit_small_patch14_reg4_dinov2 eva02_small_patch14_224 --img-size 224 \
  "${B[@]}" --repeats 5 --save docs/results/bench-backbones/small.json > /dev/null
$DVIT bench --models vit_base_patch16_siglip_224 vit_medium_patch16_gap_256 beit_base_patch16_224 "${B[@]}" \
  --repeats 2 --warmup 1 --save docs/results/bench-backbones/base.json > /dev/null
