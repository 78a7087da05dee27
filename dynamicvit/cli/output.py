"""What the commands share in writing their results: ``--save FILE`` checked before any work and written
atomically with its provenance, ``--json`` output, and the per-image distribution's lines."""

from __future__ import annotations

import argparse
import json
import shlex

from dynamicvit.core.files import atomic_write_text, check_writable

__all__ = ["check_save", "knob_text", "per_image_lines", "printed_json", "save_result", "size_kwargs"]


def check_save(args: argparse.Namespace) -> None:
    """Before any work: ``--save FILE`` must be writable."""
    if args.save:
        check_writable(args.save, "--save")


def save_result(args: argparse.Namespace, result: dict) -> None:
    """With ``--save FILE``: write ``result`` and its provenance there as JSON (atomically)."""
    from dynamicvit.core.provenance import provenance

    if args.save:
        command = shlex.join(["dynamicvit", *args.argv])
        atomic_write_text(args.save, json.dumps({**result, "provenance": provenance(command)}, indent=2))


def printed_json(args: argparse.Namespace, results: list[dict]) -> bool:
    """With ``--json``: print the result (a list when there are several) and say so."""
    if args.json:
        print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    return args.json


def size_kwargs(img_size: int | None) -> dict:
    return {} if img_size is None else {"img_size": img_size}


def per_image_lines(report: dict) -> str:
    """The per-image distribution of kept tokens and GMACs, one line each."""
    lines = [f"per image ({report['images']} images): mean / p10 / p50 / p90"]
    rows = {**{f"tokens {k}": v for k, v in report["tokens"].items()}, "GMACs": report["gmacs"]}
    for name, d in rows.items():
        lines.append(f"  {name:<16}{d['mean']:>9.3f}{d['p10']:>9.3f}{d['p50']:>9.3f}{d['p90']:>9.3f}")
    return "\n".join(lines)


def knob_text(knob: dict[str, float]) -> str:
    """A result's budget knob in words: ``{"keep_rate": 0.7}`` → ``keep rate 0.7``, ``{"r": 5.25}`` → ``r 5.25``."""
    return ", ".join(f"{k.replace('_', ' ')} {v:g}" for k, v in knob.items())
