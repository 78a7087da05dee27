"""Documented results rendered from their files: each table in the README and the documentation is made
from a JSON file under ``docs/results/`` that the command which measured it wrote (with its provenance),
so a documented figure cannot drift from its measurement. The documentation's build hook and a test call
:func:`render`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from dynamicvit.tools.provenance import describe_machine

__all__ = ["RESULTS_DIR", "render"]

RESULTS_DIR = Path(__file__).resolve().parents[2] / "docs" / "results"


def _provenance(p: dict) -> str:
    commit = (p.get("commit") or "unknown")[:10]
    return (
        f"*Measured by `{p['command']}` on {describe_machine(p['machine'])}, {p['date'][:10]}, "
        f"dynamicvit {p.get('version') or 'source'} (commit {commit}).*"
    )


def _demo(r: dict) -> str:
    dense, sparse, rand, bench = r["dense"], r["sparse"], r["random"], r["bench"]
    kept = " / ".join(map(str, sparse["kept_tokens"]))
    rows = [
        f"| model | top-1 (%) | GMACs / image | img/s (batch {bench['batch_size']}) | kept patches per stage |",
        "|---|---|---|---|---|",
        f"| dense teacher | {dense['top1']:.2f} | {dense['gmacs']:.4f} | {bench['img_per_s']['dense']:.0f} "
        f"| {r['num_patches']} |",
        f"| DynamicViT ρ={r['keep_rate']} | {sparse['top1']:.2f} | {sparse['gmacs']:.4f} "
        f"| {bench['img_per_s']['sparse']:.0f} | {kept} |",
        f"| same weights, random tokens | {rand['top1']:.2f} | {rand['gmacs']:.4f} | – | {kept} |",
        "",
        f"{100 * (1 - sparse['gmacs'] / dense['gmacs']):.1f}% fewer MACs and {bench['speedup']:.2f}× the dense "
        f"throughput (median of {bench['repeats']} interleaved batches) at {sparse['top1'] - dense['top1']:+.2f} "
        f"top-1 points; the learned predictor is {sparse['top1'] - rand['top1']:+.2f} points over random tokens "
        f"at the same counts. Data: {r['data']}.",
    ]
    return "\n".join(rows)


_RENDERERS: dict[str, Callable[[dict], str]] = {"demo": _demo}


def render(name: str, folder: Path = RESULTS_DIR) -> str:
    """The documented table of the result file ``folder/name.json``, followed by its provenance line.

    Args:
        name: the result's name (a renderer and a file of that name).
        folder: where the result files are.

    Returns:
        Markdown.
    """
    if name not in _RENDERERS:
        raise ValueError(f"no renderer for result {name!r}; known: {', '.join(_RENDERERS)}")
    result = json.loads((folder / f"{name}.json").read_text())
    return _RENDERERS[name](result) + "\n\n" + _provenance(result["provenance"])
