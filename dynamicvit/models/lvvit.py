"""LV-ViT-S and LV-ViT-M, registered with timm as ``lvvit_s`` and ``lvvit_m``.

LV-ViT (Jiang et al., "All Tokens Matter: Token Labeling for Training Better Vision Transformers",
NeurIPS 2021, arXiv 2104.10858) is a class-token ViT with three changes, each built here from timm's
own parts so that DynamicViT (:mod:`dynamicvit.models.vit`) sparsifies it like any timm ViT:

* a convolutional patch embedding: 7×7 stride-2, 3×3 and 3×3 convolutions (64 channels, BatchNorm,
  ReLU), then a (p/2)×(p/2) patchify to the embedding width;
* residual scaling: each branch is divided by ``skip_lam`` (2), a fixed :class:`ResidualScale` in
  timm ``Block``'s layer-scale slots (no weights);
* a token-labelling head ``aux_head`` on every patch token; the prediction is
  ``head(cls) + 0.5 · max over patch tokens of aux_head(token)``. After DynamicViT pruning the max
  runs over the kept tokens, as in DynamicViT's release (arXiv 2106.02034).

State-dict names are those of the TokenLabeling and DynamicViT releases (``patch_embed.conv1``,
``bn1``, …, ``proj``; ``blocks.i.attn.qkv`` without bias; ``aux_head``), so their files load unchanged.
LayerNorms use PyTorch's default epsilon (1e-5) like the original.
"""

from __future__ import annotations

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import PatchEmbed, nchw_to
from timm.layers.format import Format
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer
from timm.models.vision_transformer import checkpoint_filter_fn as vit_filter
from torch import nn

__all__ = ["LVViT", "LVViTPatchEmbed", "ResidualScale", "lvvit_m", "lvvit_s"]


class ResidualScale(nn.Module):
    """Multiplies a residual branch by a fixed factor (LV-ViT's ``1 / skip_lam``); no weights."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale

    def extra_repr(self) -> str:
        return f"scale={self.scale}"


class LVViTPatchEmbed(PatchEmbed):
    """timm ``PatchEmbed`` with LV-ViT's 4-layer convolutional embedding (``stem_width`` channels)."""

    def __init__(self, *args, stem_width: int = 64, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        ph, pw = self.patch_size
        if ph % 2 or pw % 2:
            raise ValueError(
                f"LV-ViT needs an even patch size (a stride-2 stem, then p/2 patches), got {self.patch_size}"
            )
        in_chans, embed_dim = self.proj.in_channels, self.proj.out_channels
        self.in_chans = in_chans
        self.conv1 = nn.Conv2d(in_chans, stem_width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.conv2 = nn.Conv2d(stem_width, stem_width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(stem_width)
        self.conv3 = nn.Conv2d(stem_width, stem_width, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU()
        self.proj = nn.Conv2d(stem_width, embed_dim, (ph // 2, pw // 2), stride=(ph // 2, pw // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = self.relu(bn(conv(x)))
        x = self.proj(x)
        if self.flatten:
            x = x.flatten(2).transpose(1, 2)
        elif self.output_fmt != Format.NCHW:
            x = nchw_to(x, self.output_fmt)
        return self.norm(x)


class LVViT(VisionTransformer):
    """timm ``VisionTransformer`` with LV-ViT's embedding, residual scaling and token-labelling head."""

    head_reads_tokens = True  # the prediction takes a max over patch tokens (see forward_head)

    def __init__(self, skip_lam: float = 2.0, **kwargs) -> None:
        defaults = dict(embed_layer=LVViTPatchEmbed, qkv_bias=False, mlp_ratio=3.0, norm_layer=nn.LayerNorm)
        super().__init__(**{**defaults, **kwargs})
        for blk in self.blocks:
            blk.ls1, blk.ls2 = ResidualScale(1 / skip_lam), ResidualScale(1 / skip_lam)
        self.aux_head = nn.Linear(self.embed_dim, self.num_classes) if self.num_classes else nn.Identity()

    def token_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token-labelling predictions (B, n, K) of the patch tokens in final features ``tokens``."""
        return self.aux_head(tokens[:, self.num_prefix_tokens :])

    def forward_head(
        self, x: torch.Tensor, pre_logits: bool = False, token_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``head(cls) + 0.5 · max_tokens aux_head(token)``; ``token_mask`` (B, n) limits the max to the
        patch tokens it marks (DynamicViT's train mode, where dropped tokens are masked, not removed)."""
        out = super().forward_head(x, pre_logits=pre_logits)
        if pre_logits or not self.num_classes:
            return out
        tokens = self.token_logits(x)
        if token_mask is not None:
            tokens = tokens.masked_fill(~token_mask[..., None], float("-inf"))
        return out + 0.5 * tokens.amax(dim=1)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        super().reset_classifier(num_classes, global_pool)
        self.aux_head = nn.Linear(self.embed_dim, num_classes) if num_classes else nn.Identity()


def _cfg(url: str, crop_pct: float) -> dict:
    return {
        "url": url,
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "crop_pct": crop_pct,
        "interpolation": "bicubic",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "patch_embed.conv1",
        "classifier": ("head", "aux_head"),
    }


_RELEASE = "https://github.com/zihangJiang/TokenLabeling/releases/download/1.0/"
default_cfgs = generate_default_cfgs(
    {
        "lvvit_s.in1k": _cfg(_RELEASE + "lvvit_s-26M-224-83.3.pth.tar", 0.9),
        "lvvit_m.in1k": _cfg(_RELEASE + "lvvit_m-56M-224-84.0.pth.tar", 1.0),
    }
)


def _filter(state: dict, model: LVViT) -> dict:
    """TokenLabeling's files, raw or under ``state_dict``/``model``, through timm's ViT filter."""
    for key in ("state_dict", "model"):
        if isinstance(state.get(key), dict):
            state = state[key]
    return vit_filter(state, model)


def _create(variant: str, pretrained: bool, **kwargs) -> LVViT:
    return build_model_with_cfg(LVViT, variant, pretrained, pretrained_filter_fn=_filter, **kwargs)


@register_model
def lvvit_s(pretrained: bool = False, **kwargs) -> LVViT:
    """LV-ViT-S: 16 blocks × 384 channels, 6 heads, MLP ratio 3 (6.6 GMACs at 224)."""
    args = dict(patch_size=16, embed_dim=384, depth=16, num_heads=6, skip_lam=2.0)
    return _create("lvvit_s", pretrained, **{**args, **kwargs})


@register_model
def lvvit_m(pretrained: bool = False, **kwargs) -> LVViT:
    """LV-ViT-M: 20 blocks × 512 channels, 8 heads, MLP ratio 3 (12.7 GMACs at 224)."""
    args = dict(patch_size=16, embed_dim=512, depth=20, num_heads=8, skip_lam=2.0)
    return _create("lvvit_m", pretrained, **{**args, **kwargs})
