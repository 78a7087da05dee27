"""ViTs timm lacks, registered with it (``timm.create_model`` names).

``deit_256_patch16_224``: the 256-wide DeiT of DynamicViT's release (12 blocks, 4 heads), the
backbone of its smallest checkpoint, DynamicViT-DeiT-256/0.7 (arXiv 2106.02034, Table 1).

``dvit_tiny_fmnist``: a 6-block, 96-wide ViT for small grey canvases (48×48 in the demo). Its
patch embedding is a convolutional stem – three 3×3 stride-2 convolutions with BatchNorm and
GELU, 8×8 patches – instead of one linear patchify. Trained from scratch for a few CPU minutes,
a linear-patchify ViT has to learn local features and translation invariance from attention
alone and stalls near 55–60% on Cluttered Fashion-MNIST; the overlapping convolutions give each
token a local, shift-tolerant descriptor so the transformer only has to find and classify the
item. The stem is about a tenth of the model's MACs; the blocks, where pruning acts, are the rest.
"""

from __future__ import annotations

import math

from timm.layers import PatchEmbed
from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer
from torch import nn

__all__ = ["ConvStemPatchEmbed"]


def _no_factory_extras(kwargs: dict) -> dict:
    """``kwargs`` without the keys timm's factory passes to every model function."""
    return {k: v for k, v in kwargs.items() if k not in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")}


class ConvStemPatchEmbed(PatchEmbed):
    """timm ``PatchEmbed`` whose projection is log2(patch) 3×3 stride-2 convs (BN + GELU between)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        ph, pw = self.patch_size
        if ph != pw or ph < 4 or ph & (ph - 1):
            raise ValueError(f"ConvStemPatchEmbed needs a square power-of-two patch >= 4, got {self.patch_size}")
        in_chans, embed_dim = self.proj.in_channels, self.proj.out_channels
        self.in_chans = in_chans
        steps = int(math.log2(ph))
        widths = [in_chans] + [max(embed_dim >> (steps - 1 - i), 8) for i in range(steps - 1)]
        layers: list[nn.Module] = []
        for cin, cout in zip(widths, widths[1:], strict=False):
            layers += [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.GELU()]
        layers.append(nn.Conv2d(widths[-1], embed_dim, 3, 2, 1))
        self.proj = nn.Sequential(*layers)


@register_model
def dvit_tiny_fmnist(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """6 blocks × 96 channels, 3 heads, 8×8 conv-stem patches, 1 input channel, 10 classes."""
    if pretrained:
        raise ValueError("dvit_tiny_fmnist has no pretrained weights; train one with `dynamicvit train --dense`")
    args = dict(img_size=48, patch_size=8, in_chans=1, num_classes=10, embed_dim=96, depth=6, num_heads=3)
    return VisionTransformer(embed_layer=ConvStemPatchEmbed, **{**args, **_no_factory_extras(kwargs)})


@register_model
def deit_256_patch16_224(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """DeiT with 256 channels, 12 blocks, 4 heads (DynamicViT's release); dense weights were never published."""
    if pretrained:
        raise ValueError(
            "deit_256_patch16_224 has no published dense weights; load the release's sparse checkpoint with "
            "dynamicvit.create_model('dynamicvit_deit_256.r0_7', pretrained=True)"
        )
    args = dict(patch_size=16, embed_dim=256, depth=12, num_heads=4)
    return VisionTransformer(**{**args, **_no_factory_extras(kwargs)})
