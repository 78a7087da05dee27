"""Matplotlib without a display (the Agg backend) and one atomic figure writer, shared by every picture the
package draws: kept tokens, training curves, trade-off plots and the leaderboards' plots."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dynamicvit.core.files import atomic_write  # noqa: E402

__all__ = ["plt", "save_figure"]


def save_figure(fig, path: str | os.PathLike) -> None:
    """Write a matplotlib figure to ``path`` atomically (110 dpi) and close it.

    Args:
        fig: the figure; closed whether or not the write succeeds.
        path: where the PNG goes; a failed write leaves the previous file untouched.
    """
    try:
        with atomic_write(path) as tmp:
            fig.savefig(tmp, dpi=110)
    finally:
        plt.close(fig)
