"""Ship the dense teacher of a demo with the package (``dynamicvit/experiments/assets``), so that
``dynamicvit demo`` starts from it instead of training it:

    dynamicvit demo --train-teacher --out runs/demo-teacher
    python scripts/ship_demo_teacher.py runs/demo-teacher

The record beside the weights names the demo's command, commit, machine and date and its teacher's seconds
(from the demo's ``summary.json``; for a demo stopped once its teacher finished, the teacher's logged epoch
seconds and the command given with ``--command``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dynamicvit.experiments.report import read_jsonl
from dynamicvit.experiments.shipped_teacher import ship_teacher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("demo", type=Path, help="folder of a demo that trained its teacher")
    parser.add_argument("--command", help="the command that ran that demo (default: its summary.json's)")
    args = parser.parse_args()
    run = args.demo / "teacher"
    if not (run / "last.pth").is_file():
        parser.error(f"{run}/last.pth: no such file (run the demo with --train-teacher into {args.demo} first)")
    summary_path = args.demo / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    if summary.get("teacher_shipped"):
        parser.error(f"the demo in {args.demo} started from the shipped teacher; run it with --train-teacher")
    command = args.command or summary.get("provenance", {}).get("command")
    if command is None:
        parser.error(f"{summary_path}: no such file; give the demo's command with --command")
    seconds = summary.get("teacher_seconds") or sum(e["train_seconds"] for e in read_jsonl(run / "metrics.jsonl"))
    print(ship_teacher(run, seconds, command))


if __name__ == "__main__":
    main()
