"""Tiny timm ViTs for fast CPU tests."""

from __future__ import annotations

import pytest
import torch
from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer

TINY = dict(img_size=32, patch_size=4, embed_dim=32, depth=4, num_heads=2, num_classes=10)


def tiny_vit(kind: str = "plain", **overrides) -> VisionTransformer:
    """A 4-block ViT on 32x32 images (64 patches); kinds: plain, distilled, registers."""
    kwargs = {**TINY, **overrides}
    if kind == "distilled":
        return VisionTransformerDistilled(**kwargs)
    if kind == "registers":
        kwargs.setdefault("reg_tokens", 2)
    return VisionTransformer(**kwargs)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
