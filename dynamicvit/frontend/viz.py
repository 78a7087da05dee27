"""Pictures of which tokens a sparse model kept: dropped patches greyed out, one panel per stage
(for ConvNeXt/Swin: the locations that took the fast path)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from dynamicvit.core.interfaces import find_reducer
from dynamicvit.core.tokens import index_mask
from dynamicvit.frontend.figures import plt, save_figure

__all__ = [
    "decision_cells",
    "grey_out",
    "kept_mask",
    "save_kept_token_grid",
    "save_detection_grid",
    "save_segmentation_grid",
    "visualize_files",
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
    _save_panels(rows, titles, path, row_titles)


Box = tuple[Sequence[float], str]  # (x0, y0, x1, y1) in pixels, caption


def _save_panels(
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


def visualize_files(
    model: torch.nn.Module,
    paths: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    top: int = 0,
) -> list[dict]:
    """Run an eval-mode reduced model on image files and save their kept-token grid to ``out``.

    Each file is resized to the model's input size. For ConvNeXt/Swin the drawn locations are
    those of the sparsified stage that took the slow path (greyed: fast path). Returns, per
    image, the predicted class and the tokens kept per stage; with ``top`` > 0 also the ``top`` most
    likely classes as (name, probability) pairs (``top_classes``) and the model
    ``input`` tensor.
    """
    from dynamicvit.core.flops import counts_per_image, input_size
    from dynamicvit.data.folders import load_image

    if find_reducer(model) is None:
        raise ValueError(f"{type(model).__name__} is a dense model: it keeps every token, there is nothing to show")
    if not paths:
        raise ValueError("give at least one image file")
    channels, h, w = input_size(model, None)
    loaded = [load_image(p, (h, w), channels) for p in paths]
    with torch.inference_mode():
        result = model.eval().forward_with_decisions(torch.stack([x for x, _ in loaded]))
    if not result.decisions:
        raise ValueError(f"{type(model).__name__} merges or pools tokens instead of keeping a subset; nothing to draw")
    grid, patch = decision_cells(model, (h, w))
    name_of = (lambda k: class_names[k]) if class_names else (lambda k: f"class {k}")
    names = [name_of(p) for p in result.logits.argmax(-1).tolist()]
    titles = [f"{Path(p).name}: {n}" for p, n in zip(paths, names, strict=True)]
    save_kept_token_grid([pic for _, pic in loaded], result.decisions, grid, patch, out, titles)
    rows = [
        {"image": str(p), "prediction": n, "kept_tokens": list(c)}
        for p, n, c in zip(paths, names, counts_per_image(result.decisions), strict=True)
    ]
    if top:
        probs, classes = result.logits.float().softmax(-1).topk(min(top, result.logits.shape[-1]), dim=-1)
        for row, (x, _), p, c in zip(rows, loaded, probs.tolist(), classes.tolist(), strict=True):
            row["input"] = x
            row["top_classes"] = [(name_of(k), v) for k, v in zip(c, p, strict=True)]
    return rows


def _colour(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """RGB picture of a label map; class 0 (background) black."""
    palette = plt.get_cmap("tab10" if num_classes <= 11 else "tab20")(np.arange(num_classes) % 20)[:, :3]
    palette[0] = 0.0
    return palette[labels]


def decision_cells(model: torch.nn.Module, size: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Grid the decisions of the latest forward index (ViT patches, the sparsified stage's map) and the
    input pixels per cell (rounded up so the cells cover an image of ``size``)."""
    grid = find_reducer(model).last_grid
    return grid, (-(-size[0] // grid[0]), -(-size[1] // grid[1]))


def save_segmentation_grid(model: torch.nn.Module, dataset, path: str | os.PathLike, count: int = 4) -> None:
    """PNG with one row per scene: input, ground truth, prediction, and (sparse backbones) the input
    with the locations of the sparsified stage that took the fast path greyed out."""
    items = [dataset[i] for i in range(min(count, len(dataset)))]
    x = torch.stack([im for im, _ in items])
    with torch.inference_mode():
        out = model.eval()(x, return_decisions=True)
    preds = out.logits.argmax(1).numpy()
    k = out.logits.shape[1]
    h, w = x.shape[-2:]
    slow = None
    if out.decisions:
        grid, cell = decision_cells(model, (h, w))
        slow = kept_mask(out.decisions[-1], grid)
    last = "kept tokens (last stage)" if _is_token_model(model) else "slow path (last stage)"
    titles = ["input", "ground truth", "prediction", last]
    rows = []
    for r, (image, target) in enumerate(items):
        picture = dataset.render(r)[0] if hasattr(dataset, "render") else image[0].numpy()
        panels = [grey_out(picture, np.ones((1, 1), bool), (h, w)), _colour(target.numpy(), k), _colour(preds[r], k)]
        if slow is not None:
            panels.append(grey_out(picture, slow[r], cell))
        rows.append(panels)
    _save_panels(rows, titles, path)


def _is_token_model(model: torch.nn.Module) -> bool:
    """Whether the reducer drops tokens (a ViT) rather than choosing a path per location (ConvNeXt/Swin)."""
    reducer = find_reducer(model)
    return reducer is not None and hasattr(reducer, "num_prefix_tokens")


def save_detection_grid(
    model: torch.nn.Module,
    dataset,
    path: str | os.PathLike,
    count: int = 4,
    min_score: float = 0.3,
    class_names: Sequence[str] | None = None,
) -> None:
    """PNG with one row per scene: the ground-truth boxes, the predicted boxes (class and score, those
    scoring at least ``min_score``) and, for a sparse backbone, the locations of the sparsified stage
    that took the slow path (greyed: fast path)."""
    items = [dataset[i] for i in range(min(count, len(dataset)))]
    x = torch.stack([image for image, _ in items])
    with torch.inference_mode():
        out = model.eval()(x, return_decisions=True)
    h, w = x.shape[-2:]
    names = class_names or getattr(dataset, "class_names", None)

    def name(label: int) -> str:
        return names[label] if names else str(label)

    slow = None
    if out.decisions:
        grid, cell = decision_cells(model, (h, w))
        slow = kept_mask(out.decisions[-1], grid)
    rows, boxes = [], []
    for r, ((image, target), det) in enumerate(zip(items, out.logits, strict=True)):
        picture = dataset.render(r)[0] if hasattr(dataset, "render") else image.permute(1, 2, 0).numpy()
        plain = grey_out(picture - picture.min(), np.ones((1, 1), bool), (h, w))
        truth = [(b, name(int(c))) for b, c in zip(target["boxes"].tolist(), target["labels"].tolist(), strict=True)]
        keep = det["scores"] >= min_score
        found = [
            (b, f"{name(int(c))} {s:.2f}")
            for b, c, s in zip(
                det["boxes"][keep].tolist(), det["labels"][keep].tolist(), det["scores"][keep].tolist(), strict=True
            )
        ]
        panels, overlay = [plain, plain], [truth, found]
        if slow is not None:
            panels.append(grey_out(picture - picture.min(), slow[r], cell))
            overlay.append([])
        rows.append(panels)
        boxes.append(overlay)
    titles = ["ground truth", f"prediction (score ≥ {min_score})", "slow path (last stage)"]
    _save_panels(rows, titles, path, boxes=boxes)


TASK_PICTURES: dict[str, Callable] = {"segment": save_segmentation_grid, "detect": save_detection_grid}
"""What ``dynamicvit eval --picture`` draws for a task's model, by task name."""
