"""A board's result file: its rows grouped over seeds, joined with the speed pass, and the leads with their
paired intervals (:mod:`.paired`)."""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable

import numpy as np

from dynamicvit.experiments.leaderboard.board import Board
from dynamicvit.experiments.leaderboard.entries import entries
from dynamicvit.experiments.leaderboard.paired import Lead
from dynamicvit.experiments.leaderboard.rows import unpack_correct

__all__ = ["BUDGET_TOLERANCE", "group_rows", "leads", "summarise", "top_entries"]

BUDGET_TOLERANCE = 0.02  # a row further than this (fraction of the dense MACs) from its budget is not ranked


def group_rows(rows: Iterable[dict]) -> list[dict]:
    """The rows of one entry, regime and budget over their seeds: mean and spread of top-1, every seed's top-1,
    training seconds and per-image correctness (packed, as the rows keep it)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("entry") != "dense":
            groups.setdefault((r["regime"], r["budget"], r["entry"]), []).append(r)
    out = []
    for (regime, budget, entry), runs in groups.items():
        runs = sorted(runs, key=lambda r: r["seed"] if r["seed"] is not None else -1)
        top1 = [r["top1"] for r in runs]
        first = runs[0]
        out.append({
            "regime": regime, "budget": budget, "entry": entry, "method": first["method"],
            "trained": first["trained"], "seeds": [r["seed"] for r in runs],
            "top1": statistics.fmean(top1), "top1_std": statistics.stdev(top1) if len(top1) > 1 else 0.0,
            "top1_runs": top1, "macs_fraction": statistics.fmean(r["macs_fraction"] for r in runs),
            "gmacs": statistics.fmean(r["gmacs"] for r in runs), "kept_tokens": first.get("kept_tokens"),
            "knob": first["knob"], "searched": [r["searched"] for r in runs if r["searched"]],
            "train_seconds": [r["train_seconds"] for r in runs], "images": first["images"],
            "correct": [r["correct"] for r in runs],
        })  # fmt: skip
    return sorted(out, key=lambda g: (g["regime"], g["budget"], -g["top1"]))


def _correct(group: dict) -> np.ndarray:
    return np.stack([unpack_correct(c, group["images"]) for c in group["correct"]])


def _blocks(groups: list[dict]):
    """Per regime and budget: ``(regime, budget, its rows, those within BUDGET_TOLERANCE of the budget)``."""
    for regime, budget in sorted({(g["regime"], g["budget"]) for g in groups}):
        block = [g for g in groups if (g["regime"], g["budget"]) == (regime, budget)]
        yield regime, budget, block, [g for g in block if abs(g["macs_fraction"] - budget) <= BUDGET_TOLERANCE]


def leads(groups: list[dict], labels: dict[str, str]) -> list[dict]:
    """Per regime and budget: the leader among the rows within :data:`BUDGET_TOLERANCE` of the budget, the gap
    to each other such row with its interval, the tied entries, DynamicViT's best entry, the rows off the
    budget, and the sentence that says it."""
    out = []
    for regime, budget, block, ranked in _blocks(groups):
        off = [g["entry"] for g in block if g not in ranked]
        if len(ranked) < 2:
            continue
        lead = Lead({g["entry"]: _correct(g) for g in ranked}, labels)
        ours = next((k for k in lead.order if k.startswith("dynamicvit")), None)
        sentence = lead.sentence(f"At {budget:g} of the dense MACs ({regime})", ours)
        if off:
            shown = ", ".join(f"{labels.get(g['entry'], g['entry'])} ({g['macs_fraction']:.3f})" for g in block
                              if g["entry"] in off)  # fmt: skip
            sentence += f" Not ranked, off the budget by more than {BUDGET_TOLERANCE:g} of the dense MACs: {shown}."
        out.append({
            "regime": regime, "budget": budget, "leader": lead.leader, "tied": lead.tied,
            "gaps": {k: dict(zip(("gap", "low", "high"), v, strict=True)) for k, v in lead.gaps.items()},
            "dynamicvit": ours, "off_budget": off, "sentence": sentence,
        })  # fmt: skip
    return out


def top_entries(groups: list[dict], count: int = 3) -> list[tuple[str, float, str]]:
    """The ``count`` best trained entries of every regime and budget (on budget): who gets an extra seed."""
    out = []
    for regime, budget, _, ranked in _blocks(groups):
        out += [(regime, budget, g["entry"]) for g in sorted(ranked, key=lambda g: -g["top1"])[:count] if g["trained"]]
    return out


def summarise(board: Board, speed: dict | None, command: str) -> dict:
    """The board's result file.

    Args:
        board: the opened board.
        speed: its speed pass (``speed.json``), or ``None`` before one ran.
        command: the command line that wrote the file.

    Returns:
        ``{"proxy", "teacher", "dense", "rows", "leads", "recipe", "speed", "provenance"}``.
    """
    rows = board.store.all()
    dense = next(r for r in rows if r.get("entry") == "dense")
    groups = group_rows(rows)
    for g in groups:
        g.update((speed or {}).get("blocks", {}).get(f"{g['regime']}_{g['budget']:g}", {}).get(g["entry"], {}))
    labels = {name: e.label for name, e in entries().items()}
    commits = sorted({r["provenance"]["commit"] or "" for r in rows if "provenance" in r})
    return {
        "proxy": {**dataclasses.asdict(board.proxy), "grid": board.proxy.grid},
        "teacher": board.teacher,
        "dense": {k: dense[k] for k in ("top1", "gmacs", "images")} | _dense_speed(speed),
        "labels": labels,
        "rows": groups,
        "leads": leads(groups, labels),
        "recipe": board.store.recipe,
        "speed": {k: v for k, v in (speed or {}).items() if k != "blocks"},
        "provenance": {**dense["provenance"], "command": command, "commits": commits},
    }


def _dense_speed(speed: dict | None) -> dict:
    """The dense model's median img/s over the speed pass's blocks."""
    blocks = list((speed or {}).get("blocks", {}).values())
    if not blocks:
        return {}
    return {k: statistics.median(b["dense"][k] for b in blocks) for k in ("img_per_s", "img_per_s_b1")}
