"""Pictures of dense-prediction results, the ones the segmentation and detection tasks name as theirs
(:meth:`dynamicvit.tasks.base.Task.save_picture`): per scene, the input with its labels or boxes, the
prediction, and the locations of the sparsified stage that took the slow path."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch

from dynamicvit.draw.figures import plt
from dynamicvit.draw.panels import grey_out, is_token_model, last_stage_mask, save_panels

__all__ = ["save_detection_grid", "save_segmentation_grid"]


def _colour(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """RGB picture of a label map; class 0 (background) black."""
    palette = plt.get_cmap("tab10" if num_classes <= 11 else "tab20")(np.arange(num_classes) % 20)[:, :3]
    palette[0] = 0.0
    return palette[labels]


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
    slow, cell = last_stage_mask(model, out.decisions, (h, w))
    last = "kept tokens (last stage)" if is_token_model(model) else "slow path (last stage)"
    titles = ["input", "ground truth", "prediction", last]
    rows = []
    for r, (image, target) in enumerate(items):
        picture = dataset.render(r)[0] if hasattr(dataset, "render") else image[0].numpy()
        panels = [grey_out(picture, np.ones((1, 1), bool), (h, w)), _colour(target.numpy(), k), _colour(preds[r], k)]
        if slow is not None:
            panels.append(grey_out(picture, slow[r], cell))
        rows.append(panels)
    save_panels(rows, titles, path)


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

    slow, cell = last_stage_mask(model, out.decisions, (h, w))
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
    save_panels(rows, titles, path, boxes=boxes)
