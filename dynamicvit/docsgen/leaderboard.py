"""The leaderboard pages' tables, from a board's result file (``scripts/leaderboard.py --publish``): per regime
one line per entry and a column per budget, the leads with their paired intervals, each row's training cost,
DiffRate's searched counts and the teacher that every row starts from."""

from __future__ import annotations

import statistics

__all__ = ["leaderboard_table", "leaderboards_summary", "missing_board"]


def _cell(g: dict, lead: dict | None) -> str:
    """top-1 ± std (seeds), the MACs reached and the speed-up; a leader whose lead holds in bold, the entries of
    a tie (the leader among them) marked ``=``."""
    n = len(g["top1_runs"])
    text = f"{g['top1']:.2f}" + (f" ± {g['top1_std']:.2f} ({n})" if n > 1 else "")
    if lead is not None and g["entry"] == lead["leader"] and not lead["tied"]:
        text = f"**{text}**"
    elif lead is not None and (g["entry"] in lead["tied"] or g["entry"] == lead["leader"]):
        text = f"= {text}"
    speed = f", {g['speedup']:.2f}×" if "speedup" in g else ""
    return f"{text} ({g['macs_fraction']:.3f}{speed})"


def _regime_table(summary: dict, regime: str) -> str:
    rows = [g for g in summary["rows"] if g["regime"] == regime]
    budgets = sorted({g["budget"] for g in rows})
    leads = {x["budget"]: x for x in summary["leads"] if x["regime"] == regime}
    cell = {(g["entry"], g["budget"]): g for g in rows}
    lines = [
        f"**{regime}**",
        "",
        "| entry | " + " | ".join(f"{b:g} of dense MACs" for b in budgets) + " | training s per run |",
        "|---" * (len(budgets) + 2) + "|",
    ]
    order = sorted(dict.fromkeys(g["entry"] for g in rows), key=lambda e: -statistics.fmean(
        g["top1"] for g in rows if g["entry"] == e))  # fmt: skip
    for entry in order:
        cells = [_cell(cell[entry, b], leads.get(b)) if (entry, b) in cell else "–" for b in budgets]
        seconds = [s for g in rows if g["entry"] == entry for s in g["train_seconds"]]
        cost = f"{statistics.fmean(seconds):.0f}" if any(seconds) else "training-free"
        lines.append(f"| {summary['labels'].get(entry, entry)} | " + " | ".join(cells) + f" | {cost} |")
    return "\n".join(lines)


def _searched(summary: dict) -> list[str]:
    """DiffRate's searched counts per block against its uniform start, first seed of each row."""
    lines = []
    for g in summary["rows"]:
        if g["searched"]:
            s = g["searched"][0]
            lines.append(
                f"- {g['regime']}, {g['budget']:g}: kept after pruning {s['prune']}, after merging {s['merge']} "
                f"(uniform start: {s['start_prune']}, {s['start_merge']})"
            )
    return ["DiffRate's searched patch counts per block (first seed):", "", *lines] if lines else []


def leaderboard_table(summary: dict) -> str:
    """Markdown for a board's result file."""
    t, d, p, r = summary["teacher"], summary["dense"], summary["proxy"], summary["recipe"]
    regimes = sorted({g["regime"] for g in summary["rows"]})
    seeds = sorted({s for g in summary["rows"] for s in g["seeds"] if s is not None})
    speed = summary.get("speed", {})
    timing = (
        f" Speed-ups: against the dense model timed in the same block, batch {speed['bench']['batch_size']}, "
        f"median of {speed['bench']['repeats']} interleaved runs."
        if speed
        else " Not timed yet (the speed pass has not run)."
    )
    runs = [x for g in summary["rows"] for x in g["train_seconds"] if x]
    head = (
        f"Dense teacher: {d['top1']:.2f} % top-1 on the {d['images']} test canvases; its held-out top-1 peaked at "
        f"{t['val_top1']:.2f} % in epoch {t['best_epoch']} of {t['epochs']} trained (schedule {t['max_epochs']} "
        f"epochs, stopped when it stopped rising; {t['train_seconds'] / 3600:.1f} h of training). Students: "
        f"{r['train_limit']} training canvases, {r['epochs']} epoch, seeds {', '.join(map(str, seeds))}; "
        f"{len(runs)} trained runs, {sum(runs) / 3600:.1f} h of training in all, on the machine below. Each "
        "cell: top-1 (%) ± standard deviation (seeds), then the "
        f"fraction of the dense MACs reached and the speed-up.{timing} Bold: the leader, where its lead's 95 % "
        "interval (test images and seeds) lies above zero; `=`: the entries of a tie for the lead."
    )
    parts = [head, *(_regime_table(summary, regime) for regime in regimes)]
    parts.append("\n".join(f"- {x['sentence']}" for x in summary["leads"]))
    parts.append("\n".join(_searched(summary)))
    name = p.get("name", "board")
    plots = [f"![dense teacher's held-out curve]({name}-teacher.png)", f"![top-1 vs GMACs]({name}-acc_vs_gmacs.png)"]
    if speed:
        plots.append(f"![top-1 vs img/s]({name}-acc_vs_img_per_s.png)")
    parts.append("\n".join(plots))
    parts.append(
        f"Every row's GMACs, knob, kept tokens, training seconds, each seed's top-1 and per-image results are in "
        f"`docs/results/leaderboard-{name}.json`."
    )
    return "\n\n".join(x for x in parts if x)


# the result files a board's runs write, by name prefix (then the proxy), with the command that writes each
BOARD_RESULTS = {
    "leaderboard-": "python scripts/leaderboard.py --proxy {proxy} --publish",
    "schedule-": "python scripts/schedule_search.py --proxy {proxy}",
}


def missing_board(name: str) -> str:
    """What a leaderboard page shows before its board (or the search over its students) wrote ``name``'s file."""
    prefix = next(p for p in BOARD_RESULTS if name.startswith(p))
    command = BOARD_RESULTS[prefix].format(proxy=name.removeprefix(prefix))
    return f"*No result file yet: `{command}` writes it.*"


def leaderboards_summary(*summaries: dict | None) -> str:
    """Who leads at each token grid, regime and budget, from the boards' result files (``None``: a board not yet
    published): the leader, or the entries tied for the lead, the gap to the runner-up with its 95 % interval,
    and DynamicViT's best variant with its gap; the frozen regime is what a pretrained model gets without
    training, the fine-tuned one what a short fine-tune gives."""
    lines = [
        "| tokens | regime | MACs | leads (or ties for the lead) | gap to the runner-up (95 % interval) "
        "| best DynamicViT variant, gap |",
        "|---|---|---|---|---|---|",
    ]
    for summary in (s for s in summaries if s is not None):
        lines += [_lead_line(x, summary["proxy"]["grid"], summary["labels"]) for x in summary["leads"]]
    missing = len(summaries) - sum(s is not None for s in summaries)
    if missing == len(summaries):
        return "*No board published yet (`python scripts/leaderboard.py --proxy PROXY --publish` writes one).*"
    return "\n".join(lines) + (f"\n\n*{missing} of {len(summaries)} boards not yet published.*" if missing else "")


def _lead_line(x: dict, grid: int, labels: dict[str, str]) -> str:
    """The summary's line of one regime and budget of a board (an entry of its ``leads``)."""
    runner = min(x["gaps"], key=lambda k: x["gaps"][k]["gap"])
    g, ours = x["gaps"][runner], x["dynamicvit"]
    who = " = ".join(labels.get(k, k) for k in [x["leader"], *x["tied"]])
    theirs = "leads" if ours == x["leader"] else f"{x['gaps'][ours]['gap']:.2f} behind" if ours else "–"
    return (
        f"| {grid}×{grid} | {x['regime']} | {x['budget']:g} | {who} | {g['gap']:.2f} ({g['low']:+.2f} to "
        f"{g['high']:+.2f}) | {labels.get(ours, ours) if ours else '–'}: {theirs} |"
    )
