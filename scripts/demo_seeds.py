"""Run the default demo on several student seeds and write their rows side by side:

    python scripts/demo_seeds.py --out runs/demo-seeds --save docs/results/demo-seeds.json

Each seed is a whole ``dynamicvit demo --seed S`` in ``OUT/seed-S``: the same shipped teacher, the seed's own
canvases (its test images too, so rows compare within a seed); a seed whose demo finished is read back, a
killed one resumes, so the script can be stopped and run again. The result holds each seed's top-1 of the
dense teacher, the DynamicViT student, the same weights with random tokens and the training-free rivals at
the student's MACs, and the command, commit, machine and date.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from dynamicvit.core.files import atomic_write_text
from dynamicvit.core.provenance import provenance
from dynamicvit.experiments.demo import DemoConfig
from dynamicvit.experiments.demo_seeds import seed_row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/demo-seeds"), help="one demo folder per seed here")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="student seeds (0 or more)")
    parser.add_argument("--save", type=Path, required=True, help="result file (JSON)")
    args = parser.parse_args()
    if any(s < 0 for s in args.seeds) or len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds must be distinct and 0 or more, got {args.seeds}")
    rows = [seed_row(DemoConfig(out_dir=str(args.out / f"seed-{s}"), seed=s)) for s in args.seeds]
    command = shlex.join(["python", "scripts/demo_seeds.py", *sys.argv[1:]])
    atomic_write_text(args.save, json.dumps({"rows": rows, "provenance": provenance(command)}, indent=2))
    print(args.save)


if __name__ == "__main__":
    main()
