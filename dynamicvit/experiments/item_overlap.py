"""Whether the kept tokens are the item's: on data that knows where its object is (Cluttered
Fashion-MNIST's :meth:`~dynamicvit.data.cluttered.ClutteredFashionMNIST.item_mask`), the share of kept
tokens that overlap the item (precision) and the share of the item's tokens that are kept (recall), per
stage, for the learned predictor and for random tokens at the same counts. A token is the item's when any
item pixel falls in it. The item's position is used only here, never in training.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from dynamicvit.core.predictor import random_decisions
from dynamicvit.core.tokens import index_mask

__all__ = ["item_tokens", "kept_item_overlap", "overlap"]


def item_tokens(mask: np.ndarray, patch: tuple[int, int]) -> torch.Tensor:
    """The (N,) boolean item tokens of an H×W item ``mask``: patches with any item pixel, row-major.

    Args:
        mask: H×W booleans, H and W multiples of the patch size.
        patch: the patch height and width.

    Returns:
        (H/ph · W/pw,) booleans.
    """
    (h, w), (ph, pw) = mask.shape, patch
    if h % ph or w % pw:
        raise ValueError(f"a {h}x{w} mask does not tile into {ph}x{pw} patches")
    return torch.from_numpy(mask.reshape(h // ph, ph, w // pw, pw).any(axis=(1, 3)).reshape(-1))


def overlap(kept: torch.Tensor, item: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, the precision ``|kept ∩ item| / |kept|`` and recall ``|kept ∩ item| / |item|`` of
    (B, N) boolean maps (an image without item tokens has recall 1, one keeping nothing precision 0).

    Args:
        kept: (B, N) kept tokens.
        item: (B, N) the item's tokens.

    Returns:
        ``(precision, recall)``, each (B,) float.
    """
    both = (kept & item).sum(dim=1).float()
    precision = both / kept.sum(dim=1).clamp_min(1)
    recall = torch.where(item.any(dim=1), both / item.sum(dim=1).clamp_min(1), torch.ones_like(both))
    return precision, recall


@torch.inference_mode()
def kept_item_overlap(model: nn.Module, dataset, count: int = 1000, batch_size: int = 128, seed: int = 0) -> dict:
    """Mean item precision and recall per stage of ``model``'s kept tokens and of random ones.

    Args:
        model: a DynamicViT model (fixed keep mode) on the data set's images.
        dataset: a data set with ``item_mask(index)``.
        count: how many of its first images to measure.
        batch_size: images per forward.
        seed: the random tokens' seed.

    Returns:
        ``{"images", "item_tokens": mean item tokens per image, "learned" / "random": {"precision",
        "recall": one mean per stage}}``.
    """
    model.eval()
    count, patch = min(count, len(dataset)), tuple(model.patch_embed.patch_size)
    n, generator = model.patch_embed.num_patches, torch.Generator().manual_seed(seed)
    sums = {k: torch.zeros(2, len(model.keep_counts())) for k in ("learned", "random")}
    items = 0.0
    for start in range(0, count, batch_size):
        indices = range(start, min(start + batch_size, count))
        x = torch.stack([dataset[i][0] for i in indices])
        item = torch.stack([item_tokens(dataset.item_mask(i), patch) for i in indices])
        items += float(item.sum())
        chosen = {
            "learned": model.forward_with_decisions(x).decisions,
            "random": random_decisions(len(x), n, model.keep_counts(), generator),
        }
        for name, decisions in chosen.items():
            for s, d in enumerate(decisions):
                precision, recall = overlap(index_mask(d.cpu(), n), item)
                sums[name][:, s] += torch.stack([precision.sum(), recall.sum()])
    means = {k: (v / count).tolist() for k, v in sums.items()}
    return {
        "images": count,
        "item_tokens": items / count,
        **{k: {"precision": m[0], "recall": m[1]} for k, m in means.items()},
    }
