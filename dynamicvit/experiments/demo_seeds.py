"""The demo over several student seeds (``scripts/demo_seeds.py``): one row per seed with the top-1 of every
model the demo evaluates, so the student's standing against the training-free rivals is read over seeds."""

from __future__ import annotations

import json
import shlex
from dataclasses import replace
from pathlib import Path

from dynamicvit.experiments.demo import RIVALS, DemoConfig, run_demo

__all__ = ["seed_row"]


def seed_row(cfg: DemoConfig) -> dict:
    """The demo ``cfg`` as a row: run, resumed (a killed run in ``cfg.out_dir``) or read back (a finished one).

    Args:
        cfg: a demo configuration; its ``out_dir`` is this seed's alone.

    Returns:
        The seed, top-1 and MACs fraction of the dense teacher, the student, the same weights with random
        tokens and the rivals, the student's keep rate and rule, the demo's seconds and commit.
    """
    out = Path(cfg.out_dir)
    summary_path = out / "summary.json"
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
    else:
        command = shlex.join(["dynamicvit", "demo", "--out", str(out), "--seed", str(cfg.seed)])
        summary = run_demo(replace(cfg, resume=out.exists()), command)
    models = ("dense", "sparse", "random", *RIVALS)
    return {
        "seed": cfg.seed,
        "top1": {k: summary[k]["top1"] for k in models},
        "macs_fraction": {k: summary[k]["gmacs"] / summary["dense"]["gmacs"] for k in models},
        "keep_rate": summary["keep_rate"],
        "mask_rule": summary["mask_rule"],
        "predictor_width": summary.get("predictor_width", 1.0),
        "mask_noise": summary.get("mask_noise", "always"),
        "total_seconds": summary["total_seconds"],
        "demo_commit": summary["provenance"]["commit"],
    }
