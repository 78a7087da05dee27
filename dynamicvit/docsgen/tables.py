"""Documented results rendered from their files: each table in the README and the documentation is made
from a JSON file under ``docs/results/`` that the command which measured it wrote (with its provenance),
so a documented figure cannot drift from its measurement. The documentation's build hook and a test call
:func:`render`. The package does not import this module: it is the documentation's machinery."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from dynamicvit.core.provenance import describe_machine
from dynamicvit.docsgen.budgets import budgets_summary, budgets_table
from dynamicvit.docsgen.leaderboard import BOARD_RESULTS, leaderboard_table, leaderboards_summary, missing_board
from dynamicvit.experiments.report import demo_report, demo_table, overlap_table, student_label
from dynamicvit.methods.registry import get_method
from dynamicvit.weights.zoo import ZOO

__all__ = ["RESULTS_DIR", "render"]

RESULTS_DIR = Path(__file__).resolve().parents[2] / "docs" / "results"
LEADERBOARDS = ("demo", "scale", "grid14")  # the leaderboards' proxies (dynamicvit.experiments.leaderboard.PROXIES)


def _where(p: dict) -> str:
    """Machine, day, version and commit of a provenance record."""
    commit = (p.get("commit") or "unknown")[:10]
    version = p.get("version") or "source"
    return f"{describe_machine(p['machine'])}, {p['date'][:10]}, dynamicvit {version} (commit {commit})"


def _provenance(p: dict) -> str:
    return f"*Measured by `{p['command']}` on {_where(p)}.*"


def _shared_provenance(records: list[dict]) -> str:
    """One line for rows measured on one machine, code and day by one command each; else a line per row."""
    if len({_where(p) for p in records}) > 1:
        return "\n".join(sorted({_provenance(p) for p in records}))
    tool = " ".join(records[0]["command"].split()[:2])
    where = _where(records[0])
    return f"*Each row measured by its own `{tool} … --save FILE` (the command line is in its file) on {where}.*"


def _demo(r: dict) -> str:
    dense, sparse, rand, bench = r["dense"], r["sparse"], r["random"], r["bench"]
    rows = [
        *demo_table(r),
        "",
        f"{100 * (1 - sparse['gmacs'] / dense['gmacs']):.1f}% fewer MACs and {bench['speedup']:.2f}× the dense "
        f"throughput (median of {bench['repeats']} interleaved batches) at {sparse['top1'] - dense['top1']:+.2f} "
        f"top-1 points; the learned predictor is {sparse['top1'] - rand['top1']:+.2f} points over random tokens "
        f"at the same counts. Data: {r['data']}.",
        "",
        *overlap_table(r["item_overlap"], sparse["kept_tokens"]),
    ]
    return "\n".join(rows)


def _demo_seeds(result: dict) -> str:
    """``scripts/demo_seeds.py``'s result: the default demo's top-1 per student seed, with the training-free
    rivals at the student's MACs, and on how many seeds the student is at or above each of them."""
    rows = result["rows"]
    own = ("dense", "sparse", "random")  # the demo's own rows; the rest are rivals run at the student's MACs
    rivals = [k for k in rows[0]["top1"] if k not in own and all(k in r["top1"] for r in rows)]
    names = {k: get_method(k).short_label() for k in rivals}
    lines = [
        f"| seed | dense teacher | {student_label(rows[0])} | "
        + " | ".join(f"{names[k]} (same MACs)" for k in rivals)
        + " | random tokens | demo minutes |",
        "|---" * (5 + len(rivals)) + "|",
    ]
    for r in rows:
        t = r["top1"]
        lines.append(
            f"| {r['seed']} | {t['dense']:.2f} | {t['sparse']:.2f} | "
            + " | ".join(f"{t[k]:.2f}" for k in rivals)
            + f" | {t['random']:.2f} | {r['total_seconds'] / 60:.1f} |"
        )
    wins = [f"{names[k]} on {sum(r['top1']['sparse'] >= r['top1'][k] for r in rows)} of {len(rows)}" for k in rivals]
    return "\n".join(lines) + f"\n\nSeeds on which DynamicViT is at or above the rival: {'; '.join(wins)}."


def _flops(rows: list[dict]) -> str:
    """One line per model and keep rate, the published figure from the zoo where the release has the model."""
    published = {(e.arch, e.keep_rate): e.paper_gmacs for e in ZOO.values()}
    lines = [
        "| model | ρ | kept tokens | dense GMACs | sparse GMACs | published (paper / release) |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["dense"]["gmacs"], -r["keep_rate"])):
        kept = " / ".join(str(v) for k, v in r["sparse"]["tokens"].items() if k != "input")
        paper = published.get((r["model"], r["keep_rate"]))
        lines.append(
            f"| {r['model']} | {r['keep_rate']} | {kept} | {r['dense']['gmacs']:.3f} | {r['sparse']['gmacs']:.3f} "
            f"| {'–' if paper is None else paper} |"
        )
    return "\n".join(lines)


def _zoo(rows: list[dict]) -> str:
    """The model zoo: every release checkpoint with the release's top-1, our MAC count (a ``flops --save`` file
    per zoo name) and the published one. A zoo entry without its file is an error, so none is left out."""
    ours = {r["model"]: r["sparse"]["gmacs"] for r in rows}
    missing = sorted(set(ZOO) - set(ours))
    if missing:
        raise ValueError(f"no flops result file for zoo entries {missing}")
    lines = ["| name | timm backbone | ρ | release top-1 | our GMACs | paper GMACs |", "|---|---|---|---|---|---|"]
    for name, e in ZOO.items():
        lines.append(f"| `{name}` | `{e.arch}` | {e.keep_rate} | {e.top1:.2f} | {ours[name]:.3f} | {e.paper_gmacs} |")
    return "\n".join(lines)


def _bench(files: list[dict]) -> str:
    """One line per model and batch size: img/s of dense, sparse and the sliced-token limit, and their ratios."""
    lines = [
        "| model, ρ | batch | repeats | dense img/s | sparse img/s | limit img/s | sparse / dense "
        "| sparse / limit | (limit+predictors) / limit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    runs = sorted((r for f in files for r in f["runs"]), key=lambda r: (r["model"], -r["batch_size"]))
    for r in runs:
        ips = r["img_per_s"]
        lines.append(
            f"| {r['model']}, {r['keep_rate']} | {r['batch_size']} | {r['repeats']} | {ips['dense']:.1f} "
            f"| {ips['sparse']:.1f} | {ips['limit']:.1f} | {r['speedup']:.2f}× | {r['fraction_of_limit']:.3f} "
            f"| {r['predictors_fraction_of_limit']:.3f} |"
        )
    return "\n".join(lines)


def _kept(r: dict) -> str:
    """The kept tokens (locations) per stage of an evaluation, ``all`` for a dense model."""
    return " / ".join(map(str, r.get("kept_tokens", []))) or "all"


def _runs(files: list[dict]) -> list[dict]:
    """The benchmark runs of ``bench --save`` files, by model then batch size."""
    return sorted((r for f in files for r in f["runs"]), key=lambda r: (r["model"], r["batch_size"]))


def _bench_matrix(files: list[dict]) -> str:
    """One line per variant of each batch size: img/s, ratio to dense, latency percentiles, peak memory."""
    lines = [
        "| batch | variant | img/s | × dense | p50 ms | p90 ms | p99 ms | peak MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in _runs(files):
        for name, v in r["variants"].items():
            lat, peak = v["latency_ms"], v.get("peak_mb")
            lines.append(
                f"| {r['batch_size']} | {name} | {v['img_per_s']:.1f} | {v['speedup']:.2f}× | {lat['p50']:.0f} "
                f"| {lat['p90']:.0f} | {lat['p99']:.0f} | {'–' if peak is None else f'{peak:.0f}'} |"
            )
    return "\n".join(lines)


def _bench_merged(files: list[dict]) -> str:
    """One line per model, image size and batch size: plain dropping's and merged drops' img/s at the same kept
    counts, and their ratio."""
    lines = ["| model | image | batch | repeats | plain dropping img/s | merged drops img/s | merged / plain |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in sorted(_runs(files), key=lambda r: (r["model"], r["img_size"], r["batch_size"])):
        ips = r["variants"]
        lines.append(
            f"| {r['model']}, ρ {r['keep_rate']} | {r['img_size'][0]} px | {r['batch_size']} | {r['repeats']} "
            f"| {ips['sparse']['img_per_s']:.1f} | {ips['merged drops']['img_per_s']:.1f} "
            f"| {r['merged_fraction_of_fixed']:.3f} |"
        )
    return "\n".join(lines)


def _bench_adaptive(files: list[dict]) -> str:
    """One line per batch size: dense, fixed, threshold packed and padded, and learned img/s, the threshold
    mode's kept tokens (mean, p10–p90 per stage) and mean GMACs."""
    lines = [
        "| batch | dense img/s | fixed img/s | threshold img/s | threshold / fixed | padded img/s | padded / fixed "
        "| learned / fixed | threshold kept tokens per stage, mean (p10–p90) | threshold GMACs / image |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in _runs(files):
        v, report = r["variants"], r["per_image"]
        mode = "threshold" if "threshold" in v else "adaptive"  # the rule's former name, in older result files
        kept = " / ".join(f"{d['mean']:.1f} ({d['p10']:.0f}–{d['p90']:.0f})" for d in report["tokens"].values())
        learned = r.get("learned_fraction_of_fixed")
        lines.append(
            f"| {r['batch_size']} | {v['dense']['img_per_s']:.2f} | {v['sparse']['img_per_s']:.2f} "
            f"| {v[mode]['img_per_s']:.2f} | **{r[mode + '_fraction_of_fixed']:.3f}** "
            f"| {v[mode + ' padded']['img_per_s']:.2f} | {r['padded_fraction_of_fixed']:.3f} "
            f"| {'–' if learned is None else f'**{learned:.3f}**'} | {kept} | {report['gmacs']['mean']:.3f} |"
        )
    return "\n".join(lines)


def _bench_pairs(files: list[dict]) -> str:
    """One line per model and batch size: dense and sparse img/s and the speed-up."""
    lines = ["| model, ρ | batch | dense img/s | sparse img/s | speed-up |", "|---|---|---|---|---|"]
    for r in _runs(files):
        ips = r["img_per_s"]
        lines.append(
            f"| {r['model']}, {r['keep_rate']} | {r['batch_size']} | {ips['dense']:.1f} | {ips['sparse']:.1f} "
            f"| {r['speedup']:.2f}× |"
        )
    return "\n".join(lines)


def _training(files: list[dict]) -> str:
    """One line per training-step variant of each model and batch size: seconds, peak MB, both against dense."""
    lines = ["| model, ρ, batch | step | seconds | × dense | peak MB | × dense |", "|---|---|---|---|---|---|"]
    for r in _runs(files):
        for name, secs in r["seconds"].items():
            lines.append(
                f"| {r['model']}, {r['keep_rate']}, {r['batch_size']} | {name} | {secs:.2f} "
                f"| {r['time_vs_dense'][name]:.2f} | {r['peak_mb'][name]:.0f} | {r['memory_vs_dense'][name]:.2f} |"
            )
    return "\n".join(lines)


def _evaluations(rows: list[dict]) -> str:
    """One line per ``dynamicvit eval --save`` file: the checkpoint's run folder, top-1 (or k-NN top-1 for an
    encoder), GMACs and kept tokens."""
    lines = ["| run | metric | value (%) | GMACs / image | kept patches per stage |", "|---|---|---|---|---|"]
    for r in rows:
        metric = "knn_top1" if "knn_top1" in r else "top1"
        lines.append(
            f"| {Path(r['checkpoint']).parent.name} | {'k-NN top-1' if metric == 'knn_top1' else 'top-1'} "
            f"| {r[metric]:.2f} | {r['gmacs']:.4f} | {_kept(r)} |"
        )
    return "\n".join(lines)


def _dense_prediction(rows: list[dict]) -> str:
    """One line per ``eval --save`` file of a segmenter (mIoU, pixel accuracy) or detector (COCO mAP, AP50):
    the run, its kept locations per stage, backbone and whole-model GMACs, and the test images."""
    lines = [
        "| run | mIoU or mAP (%) | pixel acc. or AP50 (%) | kept per stage | backbone GMACs | model GMACs "
        "| test images |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        first, second = (r["miou"], r["top1"]) if "miou" in r else (r["map"], r["ap50"])
        lines.append(
            f"| {Path(r['checkpoint']).parent.name} | {first:.2f} | {second:.2f} | {_kept(r)} "
            f"| {r['backbone_gmacs']:.5f} | {r['gmacs']:.5f} | {r['images']} |"
        )
    return "\n".join(lines)


def _checkpoint_speed(rows: list[dict]) -> str:
    """One line per ``bench --checkpoints --save`` file: whole model and backbone img/s, dense and sparse."""
    lines = ["| models | part | dense img/s | sparse img/s | sparse / dense |", "|---|---|---|---|---|"]
    for r in rows:
        (run,) = r["runs"]
        names = " vs ".join(Path(c).parent.name for c in run["checkpoints"])
        for part, prefix in (("whole model", ""), ("backbone alone", " backbone")):
            if f"dense{prefix}" in run["img_per_s"]:
                dense, sparse = run["img_per_s"][f"dense{prefix}"], run["img_per_s"][f"sparse{prefix}"]
                lines.append(f"| {names} | {part} | {dense:.1f} | {sparse:.1f} | {sparse / dense:.2f}× |")
    return "\n".join(lines)


def _searched_entry(row: dict) -> str:
    """The board entry whose student a schedule-search row searched (rows without one: the paper's rule)."""
    return row.get("entry", "dynamicvit")


def _schedule(result: dict) -> str:
    """``scripts/schedule_search.py``'s result: per trained student, test top-1 with the ρ schedule and with the
    schedule searched on held-out images for the same MACs, and the searched fractions."""
    lines = [
        "| entry | regime | MACs budget | seed | top-1, ρ schedule | top-1, searched | searched fractions per stage |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in sorted(result["rows"], key=lambda r: (_searched_entry(r), r["regime"], r["budget"], r["seed"])):
        fractions = " / ".join(f"{f:.2f}" for f in r["best"]["schedule"])
        lines.append(
            f"| `{_searched_entry(r)}` | {r['regime']} | {r['budget']:g} | {r['seed']} | {r['rho_top1']:.2f} "
            f"| {r['searched_top1']:.2f} | {fractions} |"
        )
    gains = [r["searched_top1"] - r["rho_top1"] for r in result["rows"]]
    mean = sum(gains) / len(gains)
    return "\n".join(lines) + f"\n\nMean change of test top-1 with the searched schedule: {mean:+.2f} points."


def _tune(r: dict) -> str:
    """``dynamicvit tune --save``'s result: the measured curve and the keep rate it picked."""
    lines = ["| keep rate | GMACs | img/s | speed-up | ms per batch |", "|---|---|---|---|---|"]
    for p in r["curve"]:
        lines.append(
            f"| {p['keep_rate']:.2f} | {p['gmacs']:.3f} | {p['img_per_s']:.1f} | {p['speedup']:.2f}× "
            f"| {p['ms_per_batch']:.0f} |"
        )
    target = f"{r['target_speedup']}× dense" if r.get("target_speedup") else f"{r['target_ms']} ms per batch"
    return "\n".join(lines) + (
        f"\n\n{r['model']}, batch {r['batch_size']}, dense {r['dense_ms_per_batch']:.0f} ms per batch; for the target "
        f"{target} tune picks keep rate **{r['keep_rate']}** ({r['gmacs']:.3f} GMACs, measured "
        f"{r['speedup']:.2f}× dense)."
    )


_RENDERERS: dict[str, Callable[[dict], str]] = {
    "demo": _demo,
    "demo-seeds": _demo_seeds,
    **{f"schedule-{proxy}": _schedule for proxy in LEADERBOARDS},
    **{f"leaderboard-{proxy}": leaderboard_table for proxy in LEADERBOARDS},
    "budgets-scale": budgets_table,
    "budgets-clutter": budgets_table,
    "budgets-scenes": budgets_table,
    "tune": _tune,
}
# renderings of other names' result files: the demo's whole report (docs/demo/report.md, its pictures beside it);
# the per-image budgets' findings over their three data sets
_SOURCES: dict[str, tuple[tuple[str, ...], Callable[..., str]]] = {
    "demo-report": (("demo",), demo_report),
    "budgets-summary": (("budgets-scenes", "budgets-scale", "budgets-clutter"), budgets_summary),
    "leaderboards-summary": (tuple(f"leaderboard-{proxy}" for proxy in LEADERBOARDS), leaderboards_summary),
}
# one file per row (or per run), in a folder of the table's name
_TABLES: dict[str, Callable[[list[dict]], str]] = {
    "flops": _flops,
    "bench": _bench,
    "bench-lvvit": _bench,
    "bench-backbones": _bench,
    "bench-matrix": _bench_matrix,
    "bench-adaptive": _bench_adaptive,
    "bench-merged": _bench_merged,
    "bench-hierarchical": _bench_pairs,
    "training": _training,
    "label-free": _evaluations,
    "freeze-prefix": _evaluations,
    "zoo": _zoo,
    **{task: _dense_prediction for task in ("segment", "vit-segment", "detect")},
    **{f"{task}-speed": _checkpoint_speed for task in ("segment", "vit-segment", "detect")},
}


def _unpublished(folder: Path, name: str) -> bool:
    """Whether ``name`` is the result of a board still being run: its file is written when it is published."""
    return name.startswith(tuple(BOARD_RESULTS)) and not (folder / f"{name}.json").exists()


def _source(folder: Path, name: str) -> dict | None:
    """The result file ``folder/name.json``; ``None`` for a leaderboard not yet published."""
    return None if _unpublished(folder, name) else json.loads((folder / f"{name}.json").read_text())


def render(name: str, folder: Path = RESULTS_DIR) -> str:
    """The documented table of the result file ``folder/name.json`` (or of every file in ``folder/name/`` for
    a table with one file per row), followed by its provenance line(s).

    Args:
        name: the result's name (a renderer and a file of that name).
        folder: where the result files are.

    Returns:
        Markdown.
    """
    if name in _TABLES:
        rows = [json.loads(p.read_text()) for p in sorted((folder / name).glob("*.json"))]
        if not rows:
            raise ValueError(f"no result files in {folder / name}")
        return _TABLES[name](rows) + "\n\n" + _shared_provenance([r["provenance"] for r in rows])
    if name in _SOURCES:
        sources, renderer = _SOURCES[name]
        return renderer(*(_source(folder, source) for source in sources))
    if name not in _RENDERERS:
        known = ", ".join([*_RENDERERS, *_SOURCES, *_TABLES])
        raise ValueError(f"no renderer for result {name!r}; known: {known}")
    result = _source(folder, name)
    if result is None:
        return missing_board(name)
    return _RENDERERS[name](result) + "\n\n" + _provenance(result["provenance"])
