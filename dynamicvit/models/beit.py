"""DynamicViT on timm's ``Beit`` (BEiT, BEiT v2: relative position bias), in place.

Everything but the blocks is DynamicViT on a ViT (:mod:`dynamicvit.models.vit`). A BEiT block adds a learned
bias to the attention logits for every pair of tokens, indexed by their relative grid position; after a
pruning stage the bias rows and columns follow the kept tokens (each image gathers the (1 + k)² entries
of its class token and kept patches), and the train-mode masked attention adds the full bias. The
adaptive keep mode (packed batches) is not available for BEiT.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.beit import Attention, Beit, Block
from torch import nn

from dynamicvit.core.attention import masked_attention
from dynamicvit.core.interfaces import Family
from dynamicvit.core.tokens import biased_qkv, layer_scale_residual
from dynamicvit.models.reducer import sparsify_family
from dynamicvit.models.registry import register_family
from dynamicvit.models.vit import DynamicViTMixin

__all__ = ["FAMILY", "SUPPORTED_BEIT", "DynamicBeitMixin", "kept_bias", "sparsify_beit"]

SUPPORTED_BEIT = "timm Beit models (BEiT, BEiT v2) with a class token and timm beit Block/Attention"


class DynamicBeitMixin(DynamicViTMixin):
    """DynamicViT's methods with BEiT's blocks: the relative position bias follows the alive tokens."""

    supports_adaptive = False
    shares_prefix = False  # its blocks take position biases: the teacher cannot resume from plain tokens
    attn_pool = None  # what the shared ViT code asks of a timm ViT's head; BEiT has none of these
    pool_include_prefix = False
    dynamic_img_size = False

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        return self.pos_drop(x)

    def _block(self, blk, x, index, policy=None):
        shared = self.rel_pos_bias() if self.rel_pos_bias is not None else None
        if index is None and policy is None:  # every token: timm's own (fused) block
            return blk(x, shared_rel_pos_bias=shared)
        bias = blk.attn._get_rel_pos_bias() if blk.attn.relative_position_bias_table is not None else None
        if shared is not None:
            bias = shared if bias is None else bias + shared
        if bias is not None and index is not None:
            bias = kept_bias(bias, index, self.num_prefix_tokens)
        attended = _beit_attention(blk.attn, blk.norm1(x), bias, policy)
        return layer_scale_residual(blk, x, attended)


def kept_bias(bias: torch.Tensor, index: torch.Tensor, prefix: int) -> torch.Tensor:
    """The (B, H, p + n, p + n) entries of a (1, H, p + N, p + N) bias for the ``prefix`` tokens and each
    image's alive patches ``index`` (B, n) – rows and columns gathered alike."""
    b, n = index.shape
    heads, full = bias.shape[1], bias.shape[-1]
    rows = torch.cat([torch.arange(prefix, device=index.device).expand(b, -1), index + prefix], dim=1)
    picked = bias.expand(b, -1, -1, -1).gather(2, rows[:, None, :, None].expand(-1, heads, -1, full))
    return picked.gather(3, rows[:, None, None, :].expand(-1, heads, prefix + n, -1))


def _beit_attention(
    attn: Attention, x: torch.Tensor, bias: torch.Tensor | None, policy: torch.Tensor | None
) -> torch.Tensor:
    """BEiT's attention with the given position ``bias``: fused in eval mode, DynamicViT's masked attention
    under a train-mode ``policy``."""
    b, n, c = x.shape
    q, k, v = biased_qkv(attn, x)
    if policy is None:
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=attn.attn_drop.p if attn.training else 0.0
        )
    else:
        out = masked_attention(q, k, v, policy, attn.scale, attn.attn_drop, bias)
    return attn.proj_drop(attn.proj(out.transpose(1, 2).reshape(b, n, c)))


def beit_problems(model: nn.Module) -> list[str]:
    """What keeps token reduction from a timm ``Beit`` (nothing: an empty list)."""
    problems = []
    if not all(isinstance(b, Block) and isinstance(b.attn, Attention) for b in model.blocks):
        problems.append("its blocks are not timm beit Block/Attention")
    if model.global_pool not in ("avg", "token", ""):
        problems.append(f"global_pool is {model.global_pool!r}")
    return problems


def sparsify_beit(model: Beit, keep_rate: float = 0.7, prune_layers=None) -> Beit:
    """Turn a timm ``Beit`` into DynamicViT in place and return it."""
    return sparsify_family(model, DynamicBeitMixin, beit_problems(model), SUPPORTED_BEIT, keep_rate, prune_layers)


FAMILY = register_family(
    Family(
        name="BEiT",
        supported=SUPPORTED_BEIT,
        recognises=lambda model: isinstance(model, Beit),
        sparsify=sparsify_beit,
        ratio_weight=2.0,  # a plain ViT's recipe
        backbone_lr_scale=0.01,
    )
)
