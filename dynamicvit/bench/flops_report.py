"""The dense and sparse MAC reports of a model by name, side by side (``dynamicvit flops``)."""

from __future__ import annotations

import torch

from dynamicvit.builder import build_pair
from dynamicvit.core.calibrate import calibrate, random_images
from dynamicvit.core.flops import count_flops, counts_per_image, input_size, per_image_gmacs, per_image_report
from dynamicvit.core.keep import DEFAULT_KEEP_MODE, KEEP_RULES
from dynamicvit.methods.budget import knob_of

__all__ = ["compare_flops"]


def compare_flops(
    model: str,
    keep_rate: float | None = None,
    method: str = "dynamicvit",
    img_size: int | None = None,
    keep_mode: str = DEFAULT_KEEP_MODE,
    **timm_kwargs,
) -> dict:
    """Dense and sparse MAC reports for a timm or zoo model name, grouped by the same stages
    (``keep_rate`` default: the zoo model's, else 0.7), reduced by ``method`` (:func:`build_pair`: ToMe's and
    MCTF's ``r`` tuned to DynamicViT's MACs at ``keep_rate``).

    A per-image ``keep_mode`` (e.g. ``"threshold"``) is calibrated to the fixed budget on 32 random images and adds
    the per-image distribution (``per_image``: tokens per stage and GMACs, mean and p10/p50/p90) on them;
    with untrained predictors it shows the mechanics, not a trained model's spread."""
    dense, sparse = build_pair(model, method, keep_rate, img_size, model_kwargs=timm_kwargs)
    d, s = count_flops(dense, prune_layers=getattr(sparse, "prune_layers", None)), count_flops(sparse)
    if KEEP_RULES.lookup(keep_mode).per_image:
        sparse.keep_mode = keep_mode  # a mode the method lacks is refused here, in one line
        images = random_images(sparse, img_size=img_size)
        calibrate(sparse, images)
        with torch.inference_mode():
            counts = counts_per_image(sparse(images, return_decisions=True).decisions)
        gmacs = per_image_gmacs(sparse, counts, img_size)
    else:
        counts, gmacs = [tuple(c for k, c in s.tokens.items() if k != "input")], [s.gmacs]
    return {
        "model": model,
        "method": method,
        "keep_rate": getattr(sparse, "keep_rate", None),
        "knob": knob_of(sparse),
        "keep_mode": keep_mode,
        "img_size": list(input_size(sparse, img_size)[1:]),
        "unit": "MACs (fvcore convention, what the papers call FLOPs)",
        "dense": d.to_dict(),
        "sparse": s.to_dict(),
        "ratio": s.total / d.total,
        "per_image": per_image_report(counts, gmacs),
    }
