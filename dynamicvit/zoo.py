"""Small ViTs registered with timm for the offline demo and tests (``timm.create_model`` names).

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
    for key in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):  # timm factory extras
        kwargs.pop(key, None)
    args = dict(img_size=48, patch_size=8, in_chans=1, num_classes=10, embed_dim=96, depth=6, num_heads=3)
    return VisionTransformer(embed_layer=ConvStemPatchEmbed, **{**args, **kwargs})
