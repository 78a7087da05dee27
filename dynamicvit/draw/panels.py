"""Panels of what a sparse model kept: patches greyed out where tokens were dropped (ViTs) or took the fast
path (ConvNeXt/Swin), one panel per stage, laid out in a PNG grid."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from dynamicvit.core.interfaces import find_reducer
from dynamicvit.core.tokens import index_mask
from dynamicvit.draw.figures import plt, save_figure

__all__ = [
    "Box",
    "decision_cells",
    "grey_out",
    "is_token_model",
    "kept_mask",
    "last_stage_mask",
    "save_kept_token_grid",
    "save_panels",
]


def kept_mask(indices, grid: tuple[int, int]) -> np.ndarray:
    """Boolean (B, gh, gw) map of the kept patches from indices into the flattened grid: (B, k) (fixed
    mode) or one 1-D tensor per image (adaptive mode)."""
    return index_mask([index.cpu() for index in indices], grid[0] * grid[1]).view(len(indices), *grid).numpy()


def grey_out(image: np.ndarray, mask: np.ndarray, patch: tuple[int, int], strength: float = 0.75) -> np.ndarray:
    """RGB float image with the patches where ``mask`` (gh, gw) is False blended towards grey."""
    rgb = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=-1)
    rgb = rgb.astype(np.float32)
    if rgb.max() > 1.0:
        rgb = rgb / 255.0
    full = np.repeat(np.repeat(mask, patch[0], axis=0), patch[1], axis=1)[: rgb.shape[0], : rgb.shape[1]]
    out = rgb.copy()
    out[~full] = (1 - strength) * rgb[~full] + strength * np.array([0.55, 0.55, 0.6], dtype=np.float32)
    return out


def save_kept_token_grid(
    images: Sequence[np.ndarray],
    decisions: Sequence[torch.Tensor],
    grid: tuple[int, int],
    patch: tuple[int, int],
    path: str | os.PathLike,
    row_titles: Sequence[str] | None = None,
) -> None:
    """PNG with one row per image: the input, then the tokens alive after each stage."""
    masks = [kept_mask(d, grid) for d in decisions]
    rows = []
    for r, image in enumerate(images):
        panels = [grey_out(image, np.ones(grid, dtype=bool), patch)]
        rows.append(panels + [grey_out(image, m[r], patch) for m in masks])
    same = all(len({int(m[r].sum()) for r in range(len(images))}) == 1 for m in masks)
    titles = ["input"] + [f"stage {c + 1}" + (f": {int(m[0].sum())} kept" if same else "") for c, m in enumerate(masks)]
    if not same:  # per-image counts (adaptive mode): say them on each row
        counts = [" / ".join(str(int(m[r].sum())) for m in masks) for r in range(len(images))]
        row_titles = [f"{t}\nkept {c}" for t, c in zip(row_titles or [""] * len(images), counts, strict=True)]
    save_panels(rows, titles, path, row_titles)


Box = tuple[Sequence[float], str]  # (x0, y0, x1, y1) in pixels, caption


def save_panels(
    rows: Sequence[Sequence[np.ndarray]],
    titles: Sequence[str],
    path: str | os.PathLike,
    row_titles: Sequence[str] | None = None,
    boxes: Sequence[Sequence[Sequence[Box]]] | None = None,
) -> None:
    """A PNG grid of RGB panels, column titles on the first row, optional row labels and, per panel,
    boxes with captions drawn on top."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.9 * n_cols, 1.9 * n_rows), squeeze=False)
    for r, panels in enumerate(rows):
        for c, panel in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            for (x0, y0, x1, y1), caption in boxes[r][c] if boxes and c < len(boxes[r]) else ():
                ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="lime", lw=0.8))
                ax.text(x0, y0 - 1, caption, color="lime", fontsize=4, va="bottom")
            if r == 0:
                ax.set_title(titles[c], fontsize=8)
        if row_titles is not None:
            axes[r][0].set_ylabel(row_titles[r], fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def decision_cells(model: torch.nn.Module, size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Grid the decisions of the latest forward index (ViT patches, the sparsified stage's map) and the
    input pixels per cell (rounded up so the cells cover an image of ``size``)."""
    grid = find_reducer(model).last_grid
    return grid, (-(-size[0] // grid[0]), -(-size[1] // grid[1]))


def is_token_model(model: torch.nn.Module) -> bool:
    """Whether the reducer drops tokens (a ViT) rather than choosing a path per location (ConvNeXt/Swin)."""
    reducer = find_reducer(model)
    return reducer is not None and hasattr(reducer, "num_prefix_tokens")


def last_stage_mask(model: torch.nn.Module, decisions, size: tuple[int, int]):
    """The kept (or slow-path) locations of the last stage as a (B, gh, gw) map and the pixels per cell, or
    ``(None, None)`` when the forward made no decisions (a dense model)."""
    if not decisions:
        return None, None
    grid, cell = decision_cells(model, size)
    return kept_mask(decisions[-1], grid), cell
