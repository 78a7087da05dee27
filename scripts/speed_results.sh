#!/usr/bin/env bash
# The speed guide's and the concepts page's measured tables, one result file per command:
#   docs/results/bench-matrix/    DeiT-S at rho 0.7: every variant (sparse, limit, compiled, ONNX) by batch size
#   docs/results/bench-adaptive/  DeiT-S at rho 0.7: fixed against adaptive (packed and padded) and learned budgets
#   docs/results/bench-hierarchical/  ConvNeXt-T and Swin-T at rho 0.7, batch 32
#   docs/results/tune.json        DeiT-S: the keep rate that reaches 1.5x the dense img/s at batch 32
# Usage: bash scripts/speed_results.sh   (about 20 minutes on 2 CPU cores; run nothing else meanwhile)
set -euo pipefail
DVIT=${DVIT:-.venv/bin/dynamicvit}
M="--model deit_small_patch16_224 --keep-rate 0.7"
mkdir -p docs/results/bench-matrix docs/results/bench-adaptive docs/results/bench-hierarchical
for b in 1 8 32; do
  repeats=$([ "$b" = 1 ] && echo 50 || echo 10)
  $DVIT bench $M --batch-size "$b" --repeats "$repeats" --compile --onnx --device cpu \
    --save "docs/results/bench-matrix/deit_small-0.7-batch$b.json" > /dev/null
done
for b in 1 8 32 64; do
  repeats=$(case "$b" in 1) echo 30 ;; 64) echo 20 ;; *) echo 10 ;; esac)  # batch 64: the noisiest ratios
  $DVIT bench $M --batch-size "$b" --repeats "$repeats" --keep-mode threshold --device cpu \
    --save "docs/results/bench-adaptive/deit_small-0.7-batch$b.json" > /dev/null
done
$DVIT bench --models convnext_tiny swin_tiny_patch4_window7_224 --keep-rate 0.7 --batch-size 32 --repeats 10 \
  --device cpu --save docs/results/bench-hierarchical/convnext_tiny-swin_tiny-0.7-batch32.json > /dev/null
$DVIT tune --model deit_small_patch16_224 --target-speedup 1.5 --batch-size 32 --save docs/results/tune.json > /dev/null
