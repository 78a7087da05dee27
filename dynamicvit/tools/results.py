"""Documented results rendered from their files: each table in the README and the documentation is made
from a JSON file under ``docs/results/`` that the command which measured it wrote (with its provenance),
so a documented figure cannot drift from its measurement. The documentation's build hook and a test call
:func:`render`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from dynamicvit.tools.provenance import describe_machine
from dynamicvit.tools.report import demo_table, overlap_table
from dynamicvit.weights.zoo import ZOO

__all__ = ["RESULTS_DIR", "render"]

RESULTS_DIR = Path(__file__).resolve().parents[2] / "docs" / "results"


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


def _training(files: list[dict]) -> str:
    """One line per training-step variant of each model and batch size: seconds, peak MB, both against dense."""
    lines = ["| model, ρ, batch | step | seconds | × dense | peak MB | × dense |", "|---|---|---|---|---|---|"]
    for r in sorted((r for f in files for r in f["runs"]), key=lambda r: (r["model"], r["batch_size"])):
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
        kept = " / ".join(map(str, r.get("kept_tokens", []))) or "all"
        lines.append(
            f"| {Path(r['checkpoint']).parent.name} | {'k-NN top-1' if metric == 'knn_top1' else 'top-1'} "
            f"| {r[metric]:.2f} | {r['gmacs']:.4f} | {kept} |"
        )
    return "\n".join(lines)


_RENDERERS: dict[str, Callable[[dict], str]] = {"demo": _demo}
# one file per row (or per run), in a folder of the table's name
_TABLES: dict[str, Callable[[list[dict]], str]] = {
    "flops": _flops,
    "bench": _bench,
    "training": _training,
    "label-free": _evaluations,
    "zoo": _zoo,
}


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
    if name not in _RENDERERS:
        raise ValueError(f"no renderer for result {name!r}; known: {', '.join([*_RENDERERS, *_TABLES])}")
    result = json.loads((folder / f"{name}.json").read_text())
    return _RENDERERS[name](result) + "\n\n" + _provenance(result["provenance"])
