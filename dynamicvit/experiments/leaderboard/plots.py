"""A board's pictures: top-1 against GMACs and against img/s, one panel per regime, one line per entry (error
bars: the standard deviation over seeds), the teacher as a star; and the teacher's held-out curve."""

from __future__ import annotations

from pathlib import Path

from dynamicvit.draw.figures import plt, save_figure

__all__ = ["save_board_plots"]


def save_board_plots(summary: dict, folder: str | Path) -> list[Path]:
    """Write the board's plots into ``folder``; the img/s plot only once the speed pass ran.

    Returns:
        The files written.
    """
    folder, written = Path(folder), []
    axes_of = [("gmacs", "GMACs per image", "acc_vs_gmacs.png")]
    if "img_per_s" in summary["dense"]:
        axes_of.append(
            ("img_per_s", f"img/s (batch {summary['speed']['bench']['batch_size']})", "acc_vs_img_per_s.png")
        )
    regimes = sorted({g["regime"] for g in summary["rows"]})
    for key, label, name in axes_of:
        fig, axes = plt.subplots(1, len(regimes), figsize=(5 * len(regimes) + 2.6, 4), squeeze=False)
        for ax, regime in zip(axes[0], regimes, strict=True):
            rows = [g for g in summary["rows"] if g["regime"] == regime]
            for entry in dict.fromkeys(g["entry"] for g in rows):
                pts = sorted((g[key], g["top1"], g["top1_std"]) for g in rows if g["entry"] == entry)
                xs, ys, errs = zip(*pts, strict=True)
                ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=2, label=summary["labels"].get(entry, entry))
            ax.plot([summary["dense"][key]], [summary["dense"]["top1"]], marker="*", markersize=12, color="black",
                    linestyle="", label="dense teacher")  # fmt: skip
            ax.set(xlabel=label, ylabel="top-1 (%)", title=f"{regime}: top-1 vs {label.split(' (')[0]}")
            ax.grid(alpha=0.3)
        handles, names = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, names, loc="center right", fontsize=7, frameon=False)
        fig.tight_layout(rect=(0, 0, 1 - 2.6 / (5 * len(regimes) + 2.6), 1))
        save_figure(fig, folder / name)
        written.append(folder / name)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    curve = summary["teacher"]["curve"]
    ax.plot([c["epoch"] for c in curve], [c["val_top1"] for c in curve], marker="o")
    ax.set(xlabel="epoch", ylabel="held-out top-1 (%)", title="dense teacher")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, folder / "teacher.png")
    return [*written, folder / "teacher.png"]
