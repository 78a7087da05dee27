"""Kept tokens of image files: a sparse model run on them, its kept-token grid saved (``dynamicvit viz`` and
the browser page). The drawing itself is :mod:`dynamicvit.draw.panels`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from dynamicvit.core.interfaces import find_reducer
from dynamicvit.draw.panels import decision_cells, save_kept_token_grid

__all__ = ["visualize_files"]


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
