"""Report writing: training curves as PNG and a markdown summary of dense vs sparse, each file written
atomically."""

from __future__ import annotations

import json
import os
from pathlib import Path

from dynamicvit.core.files import atomic_write_text
from dynamicvit.core.provenance import describe_machine
from dynamicvit.draw.figures import plt, save_figure

__all__ = [
    "demo_report",
    "demo_table",
    "lead_sentences",
    "overlap_table",
    "read_jsonl",
    "regime_rows",
    "student_label",
    "save_curves",
    "save_tradeoff_plots",
    "write_comparison_markdown",
    "write_html",
    "write_markdown",
]


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
    save_figure(fig, path)


def write_markdown(summary: dict, path: str | os.PathLike) -> None:
    """The demo's report: results table, kept tokens on the item, speed, pictures, how it was made."""
    atomic_write_text(path, demo_report(summary))


def demo_report(summary: dict) -> str:
    """The demo's report (markdown) from its ``summary.json``: what the run writes as ``report.md`` and the
    documentation renders from ``docs/results/demo.json``; its pictures are read beside it."""
    return "\n".join(_demo_lines(summary))


def write_html(markdown_path: str | os.PathLike, path: str | os.PathLike) -> None:
    """``markdown_path`` as a standalone HTML page (its images stay beside it), for opening in a browser."""
    import markdown

    body = markdown.markdown(Path(markdown_path).read_text(), extensions=["tables"])
    style = "body{font-family:sans-serif;max-width:60rem;margin:2rem auto}table{border-collapse:collapse}"
    style += "td,th{border:1px solid #ccc;padding:.25rem .5rem}img{max-width:100%}"
    page = "<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>dynamicvit report</title>"
    atomic_write_text(path, f"{page}<style>{style}</style></head><body>\n{body}\n</body></html>\n")


def overlap_table(overlap: dict, kept: list[int]) -> list[str]:
    """The kept-tokens-on-the-item table of the demo (markdown lines): precision and recall per stage, of the
    learned predictor and of random tokens (:func:`~dynamicvit.experiments.item_overlap.kept_item_overlap`)."""
    learned, rand = overlap["learned"], overlap["random"]
    lines = [
        f"Kept tokens on the item ({overlap['images']} test canvases; the item covers "
        f"{overlap['item_tokens']:.1f} tokens on average; a token is the item's when any item pixel falls in it):",
        "",
        "| stage | kept | precision: learned | precision: random | recall: learned | recall: random |",
        "|---|---|---|---|---|---|",
    ]
    for i, k in enumerate(kept):
        lines.append(
            f"| {i + 1} | {k} | {learned['precision'][i]:.3f} | {rand['precision'][i]:.3f} "
            f"| {learned['recall'][i]:.3f} | {rand['recall'][i]:.3f} |"
        )
    return lines


# the demo's training-free rivals: their key in a summary and their row's label (a summary may lack a rival
# added after it was written)
_RIVAL_LABELS = {"tome": "ToMe r={r:g}", "evit": "EViT keep rate {keep_rate:g}"}


def demo_table(summary: dict) -> list[str]:
    """The demo's results table (markdown lines): the dense teacher, DynamicViT, the same weights with random
    tokens, and ToMe and EViT on the teacher at the same MACs."""
    b = summary["bench"]
    return [
        "| model | top-1 (%) | GMACs / image | img/s (batch {}) | kept patches per stage |".format(b["batch_size"]),
        "|---|---|---|---|---|",
        _demo_row("dense teacher", summary["dense"], f"{b['img_per_s']['dense']:.0f}", str(summary["num_patches"])),
        _demo_row(student_label(summary), summary["sparse"], f"{b['img_per_s']['sparse']:.0f}"),
        _demo_row("same weights, random tokens", summary["random"]),
        *(
            _demo_row(f"{label.format(**summary[key])} on the teacher (no training)", summary[key])
            for key, label in _RIVAL_LABELS.items()
            if key in summary
        ),
    ]


def student_label(summary: dict) -> str:
    """``DynamicViT ρ=0.7, top-k rule, predictors 0.25× wide``: the keep rate, training rule (and its noise) and
    predictor width of a demo's summary (or of a row with ``keep_rate``, ``mask_rule``, ``predictor_width``,
    ``mask_noise``; one without a rule, width or noise predates them: the paper's, always noisy)."""
    rule = "top-k rule" if summary.get("mask_rule") == "topk" else "Gumbel rule"
    rule += ", noise only while frozen" if summary.get("mask_noise") == "frozen" else ""
    width = summary.get("predictor_width", 1.0)
    return f"DynamicViT ρ={summary['keep_rate']}, {rule}" + (f", predictors {width:g}× wide" if width != 1 else "")


def _demo_row(label: str, result: dict, img_per_s: str = "–", kept: str | None = None) -> str:
    kept = kept or " / ".join(map(str, result["kept_tokens"]))
    return f"| {label} | {result['top1']:.2f} | {result['gmacs']:.4f} | {img_per_s} | {kept} |"


def _teacher_time(summary: dict) -> str:
    """How long the teacher took: trained here, or shipped with the package (trained once, by its command)."""
    shipped = summary.get("teacher_shipped")
    if not shipped:
        return f"teacher {summary['teacher_seconds']:.0f} s"
    return (
        f"teacher shipped with the package (trained in {shipped['train_seconds']:.0f} s by `{shipped['command']}`, "
        f"{shipped['date'][:10]}; `--train-teacher` trains it here)"
    )


def _demo_lines(summary: dict) -> list[str]:
    d, s, r, b = (summary[k] for k in ("dense", "sparse", "random", "bench"))
    return [
        "# dynamicvit demo report",
        "",
        f"Data: {summary['data']}. Machine: {describe_machine(summary['provenance']['machine'])}. "
        f"Command: `{summary['provenance']['command']}` ({summary['provenance']['date']}).",
        "",
        *demo_table(summary),
        "",
        f"- Sparse vs dense: {s['top1'] - d['top1']:+.2f} top-1 points, {100 * (1 - s['gmacs'] / d['gmacs']):.1f}% "
        f"fewer MACs, {b['speedup']:.2f}× the dense throughput (median of {b['repeats']} interleaved runs, "
        f"{b['threads']} threads).",
        f"- Learned predictor vs random selection at the same token counts: {s['top1'] - r['top1']:+.2f} points.",
        f"- Training time: {_teacher_time(summary)}, sparse fine-tuning {summary['student_seconds']:.0f} s; whole "
        f"demo {summary['total_seconds']:.0f} s.",
        "",
        *overlap_table(summary["item_overlap"], s["kept_tokens"]),
        "",
        "![training curves](curves.png)",
        "",
        "Kept tokens (greyed patches were dropped at that stage):",
        "",
        "![kept tokens](kept_tokens.png)",
        "",
    ]


def regime_rows(summary: dict) -> dict[str, list[dict]]:
    """A comparison's rows by regime (a result file without regimes: one, named ``recipe``)."""
    out: dict[str, list[dict]] = {}
    for r in summary["rows"]:
        out.setdefault(r.get("regime", "recipe"), []).append(r)
    return out


def _top1(r: dict) -> str:
    """``mean ± std (n)`` for a row trained over seeds, the single value otherwise."""
    n = len(r.get("top1_runs", [r["top1"]]))
    return f"{r['top1']:.2f} ± {r['top1_std']:.2f} ({n})" if n > 1 else f"{r['top1']:.2f}"


def _verdict(first: dict, second: dict) -> str:
    """Whether ``first``'s lead over ``second`` exceeds the seed spread (the larger standard deviation of the
    two); two training-free rows have no spread: one evaluation each."""
    if not (first.get("trained") or second.get("trained")):
        return "both training-free (no seed spread: one evaluation each)"
    spread = max(first.get("top1_std", 0), second.get("top1_std", 0))
    margin = first["top1"] - second["top1"]
    return (
        f"more than the seed spread ({spread:.2f})"
        if margin > spread
        else f"within the seed spread ({spread:.2f}): a tie"
    )


def lead_sentences(summary: dict, tolerance: float = 0.02) -> list[str]:
    """One plain sentence per regime and budget: which method leads, by how much and whether that exceeds the
    seed spread (:func:`_verdict`); where DynamicViT stands; the rows whose knob could not reach the budget
    within ``tolerance``."""
    labels, lines = summary.get("labels", {}), []
    name = lambda r: labels.get(r["method"], r["method"])  # noqa: E731
    for regime, rows in regime_rows(summary).items():
        for budget in summary["budgets"]:
            block = sorted((r for r in rows if r["budget"] == budget), key=lambda r: -r["top1"])
            if len(block) < 2:
                continue
            first, second = block[0], block[1]
            line = (
                f"At {budget:g} of the dense MACs ({regime}), {name(first)} leads {name(second)} by "
                f"{first['top1'] - second['top1']:.2f} points, {_verdict(first, second)}."
            )
            ours = next((r for r in block if r["method"] == "dynamicvit"), None)
            if ours is not None and ours is not first:
                line += f" DynamicViT is {first['top1'] - ours['top1']:.2f} points behind the leader."
            variant = next((r for r in block if r["method"].startswith("dynamicvit+")), None)  # the best one
            if variant is not None and variant is not first:
                line += f" Its best variant, {name(variant)}, is {first['top1'] - variant['top1']:.2f} behind."
            missed = [
                f"{name(r)} {r['macs_fraction']:.3f}" for r in block if abs(r["macs_fraction"] - budget) > tolerance
            ]
            if missed:
                line += f" Off the budget by more than {tolerance:.0%} (coarse knob steps): {', '.join(missed)}."
            lines.append(line)
    return lines


def save_tradeoff_plots(summary: dict, out_dir: str | os.PathLike) -> None:
    """``acc_vs_gmacs.png`` and ``acc_vs_img_per_s.png``: one panel per regime, one line per method with
    the seeds' standard deviation as error bars, the dense model as a star."""
    by_regime, dense = regime_rows(summary), summary["dense"]
    for key, label, name in (
        ("gmacs", "GMACs per image", "acc_vs_gmacs.png"),
        ("img_per_s", f"img/s (batch {summary['bench']['batch_size']})", "acc_vs_img_per_s.png"),
    ):
        fig, axes = plt.subplots(1, len(by_regime), figsize=(5 * len(by_regime) + 2.2, 4), squeeze=False)
        for ax, (regime, rows) in zip(axes[0], by_regime.items(), strict=True):
            for method in summary["methods"]:
                pts = sorted((r[key], r["top1"], r.get("top1_std", 0.0)) for r in rows if r["method"] == method)
                xs, ys, errs = zip(*pts, strict=True)
                ax.errorbar(
                    xs, ys, yerr=errs, marker="o", capsize=2, label=summary.get("labels", {}).get(method, method)
                )
            ax.plot(
                [dense[key]], [dense["top1"]], marker="*", markersize=12, color="black", linestyle="", label="dense"
            )
            ax.set(xlabel=label, ylabel="top-1 (%)", title=f"{regime}: top-1 vs {label.split(' (')[0]}")
            ax.grid(alpha=0.3)
        handles, names = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, names, loc="center right", fontsize=7, frameon=False)  # beside the panels, not over them
        fig.tight_layout(rect=(0, 0, 1 - 2.2 / (5 * len(by_regime) + 2.2), 1))
        save_figure(fig, Path(out_dir) / name)


def write_comparison_markdown(summary: dict, path: str | os.PathLike) -> None:
    """The comparison table, one block of rows per regime and budget, best top-1 in bold, then who leads."""
    d, b, labels = summary["dense"], summary["bench"], summary.get("labels", {})
    lines = [
        "# Token reduction at matched MACs",
        "",
        f"Dense model: top-1 {d['top1']:.2f}%, {d['gmacs']:.4f} GMACs, {d['img_per_s']:.0f} img/s. "
        f"Throughput: batch {b['batch_size']} and batch 1, median of {b['repeats']} interleaved runs, {b['threads']} "
        f"threads ({describe_machine(summary['provenance']['machine'])}); speed-up is against the dense model timed "
        "in the same run, in brackets after img/s. Trained rows: mean ± standard deviation over the seeds "
        "(their number in brackets).",
        "",
        "| regime | budget | method | top-1 (%) | GMACs | MACs / dense | img/s | img/s (batch 1) | knob |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for regime, rows in regime_rows(summary).items():
        for budget in summary["budgets"]:
            block = [r for r in rows if r["budget"] == budget]
            best = max(r["top1"] for r in block)
            for r in sorted(block, key=lambda r: -r["top1"]):
                top1 = f"**{_top1(r)}**" if r["top1"] == best else _top1(r)
                knob = ", ".join(f"{k} {v}" for k, v in r["knob"].items())
                lines.append(
                    f"| {regime} | {budget:g} | {labels.get(r['method'], r['method'])} | {top1} | {r['gmacs']:.4f} "
                    f"| {r['macs_fraction']:.3f} | {r['img_per_s']:.0f} ({r['speedup']:.2f}×) "
                    f"| {r.get('img_per_s_b1', float('nan')):.0f} | {knob} |"
                )
    lines += [
        "",
        *lead_sentences(summary),
        "",
        "![top-1 vs GMACs](acc_vs_gmacs.png) ![top-1 vs img/s](acc_vs_img_per_s.png)",
        "",
    ]
    atomic_write_text(path, "\n".join(lines))
