"""The per-image budget curves' tables (``scripts/budget_curves.py``'s result files): each keep mode's score and
MACs per keep rate, the calibration's carry-over, the learned students against the fixed curve, and the
verdicts. The columns are the result files' keys."""

from __future__ import annotations

__all__ = ["budgets_summary", "budgets_table"]

BUDGET_MODES = ("fixed", "threshold", "learned")
AS_TRAINED = "learned, as trained"
FIXED_COUNTS = "learned, fixed counts"
METRIC_NAMES = {"top1": "top-1", "miou": "mIoU"}
DATA_NAMES = {
    "scenes": "scenes with 1 to 6 items",
    "scale": "objects of varying size",
    "clutter": "the demo's canvases",
}


def budgets_table(r: dict) -> str:
    """``scripts/budget_curves.py``'s result: per keep rate, the score (top-1, or mIoU for segmentation) and
    mean MACs of the three keep modes at the fixed mode's mean counts; the per-image modes' MACs spread and
    their test cost against the fixed mode's (the calibration's carry-over); the learned students at their
    trained budgets against the fixed curve and at the fixed counts; then the verdicts."""
    rows, metric = r["budgets"], r.get("metric", "top1")
    lines, wins = _budget_scores(rows, metric)
    lines += ["", "| ρ | mode | MMACs per image p10 / p50 / p90 | test MACs vs fixed |", "|---|---|---|---|"]
    for row in rows:
        for m in [m for m in (*BUDGET_MODES[1:], AS_TRAINED) if m in row]:
            g = row[m]["per_image"]["gmacs"]
            spread = " / ".join(f"{1e3 * g[q]:.2f}" for q in ("p10", "p50", "p90"))
            cost = 100 * (row[m]["gmacs"] / row["fixed"]["gmacs"] - 1)
            lines.append(f"| {row['keep_rate']:g} | {m} | {spread} | {cost:+.1f} % |")
    if all(AS_TRAINED in row for row in rows):
        table, own_wins = _as_trained(rows, metric)
        lines += table
        wins = [a or b for a, b in zip(wins, own_wins, strict=True)]
    if all(FIXED_COUNTS in row for row in rows):
        lines += _attribution(rows, metric)
    d = r["dense"]
    dense = f"Dense teacher: {d[metric]:.2f} % {METRIC_NAMES[metric]}, {1e3 * d['gmacs']:.2f} MMACs; "
    lines += ["", f"{dense}{r['test_images']} test images. {_budget_verdict(rows, metric, sum(wins))}"]
    return "\n".join(lines)


def _budget_scores(rows: list[dict], metric: str) -> tuple[list[str], list[bool]]:
    """The keep modes' scores and MACs per keep rate, and per row whether a per-image mode is at least 0.5
    points above the fixed mode at equal mean MACs (±1 %)."""
    name, per_image = METRIC_NAMES[metric], BUDGET_MODES[1:]
    lines = [
        "| ρ | " + " | ".join(f"{m}: {name}, MMACs" for m in BUDGET_MODES) + " | "
        + " | ".join(f"{m} − fixed" for m in per_image) + " |",
        "|---" * (len(BUDGET_MODES) + len(per_image) + 1) + "|",
    ]  # fmt: skip
    wins = []
    for row in rows:
        cells = [f"{row[m][metric]:.2f}, {1e3 * row[m]['gmacs']:.2f}" for m in BUDGET_MODES]
        gains = {m: row[m][metric] - row["fixed"][metric] for m in per_image}
        wins.append(any(g >= 0.5 and abs(row[m]["gmacs"] / row["fixed"]["gmacs"] - 1) <= 0.01
                        for m, g in gains.items()))  # fmt: skip
        lines.append(f"| {row['keep_rate']:g} | " + " | ".join([*cells, *(f"{g:+.2f}" for g in gains.values())]) + " |")
    return lines, wins


def _budget_verdict(rows: list[dict], metric: str, won: int) -> str:
    """The target's verdict (``won`` budgets won; with one budget, the learned mode within 0.3 points of the
    fixed one) and, with the learned students at the fixed counts, the per-image budgets' own share."""
    name = METRIC_NAMES[metric]
    if len(rows) == 1:  # one budget: the check that the learned rule costs nothing where images are alike
        close = rows[0]["learned"][metric] - rows[0]["fixed"][metric] >= -0.3
        return f"Target – the learned mode within 0.3 points of the fixed mode – **{'met' if close else 'not met'}**."
    verdict = (
        f"Target – a per-image mode (threshold or learned) at least 0.5 points of {name} above the fixed mode at "
        f"equal mean MACs (±1 %), or the learned students at the fixed curve's {name} with at least 15 % fewer "
        f"mean MACs, at two of the budgets – **{'met' if won >= 2 else 'not met'}** ({won} of {len(rows)})."
    )
    if all(FIXED_COUNTS in row for row in rows):
        own = sum(row["learned"][metric] - row[FIXED_COUNTS][metric] >= 0.5 for row in rows)
        verdict += (
            " The budgets' own share – the learned mode at least 0.5 points above the same student at the fixed "
            f"counts, at two of the budgets – **{'met' if own >= 2 else 'not met'}** ({own} of {len(rows)})."
        )
    return verdict


def _attribution(rows: list[dict], metric: str) -> list[str]:
    """The learned student at the fixed mode's counts against the fixed student (what its training gives) and
    against itself with its per-image budgets (what the budgets add)."""
    name = METRIC_NAMES[metric]
    lines = [
        "",
        f"| ρ | learned student at the fixed counts: {name}, MMACs | − fixed student | learned − it (the budgets) |",
        "|---|---|---|---|",
    ]
    for row in rows:
        own, fixed, learned = row[FIXED_COUNTS][metric], row["fixed"][metric], row["learned"][metric]
        cells = f"{own:.2f}, {1e3 * row[FIXED_COUNTS]['gmacs']:.2f} | {own - fixed:+.2f} | {learned - own:+.2f}"
        lines.append(f"| {row['keep_rate']:g} | {cells} |")
    return lines


def _interpolate(points: list[tuple[float, float]], at: float) -> float | None:
    """The piecewise-linear curve through ``points`` (x ascending) at ``at``; ``None`` outside it."""
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if x0 <= at <= x1:
            return y0 + (y1 - y0) * (at - x0) / (x1 - x0) if x1 > x0 else max(y0, y1)
    return None


def _as_trained(rows: list[dict], metric: str = "top1") -> tuple[list[str], list[bool]]:
    """The learned students at the mean cost training left them, against the fixed students' curve (linear
    between the measured budgets): their score (``metric``) at the same MACs and the MACs it needs for the same
    score. Returns the table and, per row, whether the student is 0.5 points above the curve or 15 % cheaper."""
    name = METRIC_NAMES[metric]
    curve = sorted((row["fixed"]["gmacs"], row["fixed"][metric]) for row in rows)
    lines = [
        "",
        f"| ρ | learned, as trained: {name}, MMACs | fixed curve's {name} at these MACs "
        f"| fixed curve's MMACs for this {name} |",
        "|---|---|---|---|",
    ]
    wins = []
    for row in rows:
        own = row[AS_TRAINED]
        same_macs = _interpolate(curve, own["gmacs"])
        same_score = _interpolate(sorted((t, g) for g, t in curve), own[metric])
        at_macs, for_score = "outside the curve", "outside the curve"
        if same_macs is not None:
            at_macs = f"{same_macs:.2f} ({own[metric] - same_macs:+.2f})"
        if same_score is not None:
            for_score = f"{1e3 * same_score:.2f} ({100 * (own['gmacs'] / same_score - 1):+.1f} %)"
        wins.append(
            (same_macs is not None and own[metric] - same_macs >= 0.5)
            or (same_score is not None and own["gmacs"] <= 0.85 * same_score)
        )
        cells = f"{own[metric]:.2f}, {1e3 * own['gmacs']:.2f} | {at_macs} | {for_score}"
        lines.append(f"| {row['keep_rate']:g} | {cells} |")
    return lines, wins


def budgets_summary(*results: dict) -> str:
    """One line per ``scripts/budget_curves.py`` result, each cell a value per keep rate (ρ ascending): what the
    learned budgets add to the same student at the fixed counts, what the learned student's training adds at
    those counts over the fixed student, the threshold mode against the fixed one, and how the mean test cost
    of the calibrated per-image modes carries over (against the fixed mode's)."""
    lines = [
        "| data (score) | ρ | learned − same student at fixed counts | that student − fixed student "
        "| threshold − fixed | test MACs vs fixed: learned | test MACs vs fixed: threshold |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        rows, metric = sorted(r["budgets"], key=lambda row: row["keep_rate"]), r.get("metric", "top1")
        diffs = [
            [row["learned"][metric] - row[FIXED_COUNTS][metric] for row in rows],
            [row[FIXED_COUNTS][metric] - row["fixed"][metric] for row in rows],
            [row["threshold"][metric] - row["fixed"][metric] for row in rows],
        ]
        costs = [[100 * (row[m]["gmacs"] / row["fixed"]["gmacs"] - 1) for row in rows] for m in BUDGET_MODES[:0:-1]]
        cells = [
            " / ".join(f"{row['keep_rate']:g}" for row in rows),
            *(" / ".join(f"{v:+.2f}" for v in d) for d in diffs),
            *(" / ".join(f"{v:+.1f} %" for v in c) for c in costs),
        ]
        lines.append(f"| {DATA_NAMES.get(r['data'], r['data'])} ({METRIC_NAMES[metric]}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)
