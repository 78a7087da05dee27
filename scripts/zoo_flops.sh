#!/usr/bin/env bash
# Our MAC count of every model in the zoo, one result file each (docs/results/zoo/NAME.json), rendered
# into the model-zoo guide. Usage: bash scripts/zoo_flops.sh   (a few minutes on 2 CPU cores)
set -euo pipefail
DVIT=${DVIT:-.venv/bin/dynamicvit}
mkdir -p docs/results/zoo
for m in $($DVIT models | awk '/^dynamicvit_/{print $1}'); do
  $DVIT flops --model "$m" --save "docs/results/zoo/$m.json" > /dev/null
done
