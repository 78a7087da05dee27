"""Report writing: training curves as PNG and a markdown summary of dense vs sparse."""

from __future__ import annotations

import json
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

__all__ = ["read_jsonl", "save_curves", "write_markdown"]


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def save_curves(runs: dict[str, Path], path: str | os.PathLike) -> None:
    """Loss per logged step and validation top-1 per epoch, one line per run."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    for name, run_dir in runs.items():
        steps = read_jsonl(Path(run_dir) / "steps.jsonl")
        if steps:
            ax_loss.plot([s["update"] for s in steps], [s["loss"] for s in steps], label=name)
        epochs = read_jsonl(Path(run_dir) / "metrics.jsonl")
        if epochs:
            ax_acc.plot([e["epoch"] for e in epochs], [e["val_top1"] for e in epochs], marker="o", label=name)
    ax_loss.set(xlabel="update", ylabel="training loss", title="training loss")
    ax_acc.set(xlabel="epoch", ylabel="top-1 (%)", title="test top-1")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_markdown(summary: dict, path: str | os.PathLike) -> None:
    """The demo's report: results table, kept tokens, speed, pictures, how it was made."""
    d, s, r = summary["dense"], summary["sparse"], summary["random"]
    b = summary["bench"]
    lines = [
        "# dynamicvit demo report",
        "",
        f"Data: {summary['data']}. Machine: {summary['machine']}. Command: `{summary['command']}`.",
        "",
        "| model | top-1 (%) | GMACs / image | img/s (batch {}) | kept patches per stage |".format(b["batch_size"]),
        "|---|---|---|---|---|",
        f"| dense teacher | {d['top1']:.2f} | {d['gmacs']:.4f} | {b['img_per_s']['dense']:.0f} | "
        f"{summary['num_patches']} |",
        f"| DynamicViT ρ={summary['keep_rate']} | {s['top1']:.2f} | {s['gmacs']:.4f} | "
        f"{b['img_per_s']['sparse']:.0f} | {' / '.join(map(str, s['kept_tokens']))} |",
        f"| same weights, random tokens | {r['top1']:.2f} | {r['gmacs']:.4f} | – | "
        f"{' / '.join(map(str, r['kept_tokens']))} |",
        "",
        f"- Sparse vs dense: {s['top1'] - d['top1']:+.2f} top-1 points, {100 * (1 - s['gmacs'] / d['gmacs']):.1f}% "
        f"fewer MACs, {b['speedup']:.2f}× the dense throughput (median of {b['repeats']} interleaved runs, "
        f"{b['threads']} threads).",
        f"- Learned predictor vs random selection at the same token counts: {s['top1'] - r['top1']:+.2f} points.",
        f"- Training time: teacher {summary['teacher_seconds']:.0f} s, sparse fine-tuning "
        f"{summary['student_seconds']:.0f} s; whole demo {summary['total_seconds']:.0f} s.",
        "",
        "![training curves](curves.png)",
        "",
        "Kept tokens (greyed patches were dropped at that stage):",
        "",
        "![kept tokens](kept_tokens.png)",
        "",
    ]
    Path(path).write_text("\n".join(lines))
