"""DynamicViT on timm's ``Eva`` (EVA, EVA-02: rotary position embeddings, SwiGLU, sub-LN), in place.

Everything but the blocks is DynamicViT on a ViT (:mod:`dynamicvit.models.vit`): the predictors, the keep
schedule, the train/eval contract, token restoration. What differs is that an EVA block rotates the
queries and keys of the patch tokens by their grid positions, so the rotary embeddings follow the kept
tokens: after a pruning stage each image's rows of the (N, dim) table are gathered by its kept indices
(as timm's own patch dropout does), and the train-mode masked attention applies the full table to all
tokens. The adaptive keep mode (packed batches) is not available for EVA.
"""

from __future__ import annotations

import torch
from timm.layers import apply_rot_embed_cat
from timm.models.eva import Eva, EvaAttention, EvaBlock, EvaBlockPostNorm
from torch import nn

from dynamicvit.core.attention import masked_attention
from dynamicvit.core.interfaces import Family
from dynamicvit.core.tokens import biased_qkv, layer_scale_residual
from dynamicvit.models.reducer import check_pools, sparsify_family
from dynamicvit.models.registry import register_family
from dynamicvit.models.vit import DynamicViTMixin

__all__ = ["FAMILY", "SUPPORTED_EVA", "DynamicEvaMixin", "sparsify_eva"]

SUPPORTED_EVA = (
    "timm Eva models (EVA, EVA-02) with EvaBlock/EvaBlockPostNorm blocks and one rotary table for all blocks"
)


class DynamicEvaMixin(DynamicViTMixin):
    """DynamicViT's methods with EVA's blocks: the rotary embeddings follow the alive tokens."""

    supports_adaptive = False
    shares_prefix = False  # its blocks take rotary tables: the teacher cannot resume from plain tokens
    pool_include_prefix = False  # timm's Eva pools over the patch tokens

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x, _ = self._pos_embed(x)  # the rotary table is rebuilt per block for the alive tokens
        return self.norm_pre(x)

    def _rope(self, index: torch.Tensor | None) -> torch.Tensor | None:
        """The rotary table of the patch grid (N, dim), or its rows for the alive tokens (B, 1, n, dim)."""
        if self.rope is None:
            return None
        rope = self.rope.get_embed(shape=self.last_grid if self.dynamic_img_size else self.patch_embed.grid_size)
        return rope if index is None else rope[index].unsqueeze(1)

    def _block(self, blk, x, index, policy=None):
        rope = self._rope(index)
        if policy is None:
            return blk(x, rope=rope)
        attended = _masked_eva_attention(
            blk.attn, x if isinstance(blk, EvaBlockPostNorm) else blk.norm1(x), policy, rope
        )
        if isinstance(blk, EvaBlockPostNorm):
            x = x + blk.drop_path1(blk.norm1(attended))
            return x + blk.drop_path2(blk.norm2(blk.mlp(x)))
        return layer_scale_residual(blk, x, attended)


def _masked_eva_attention(
    attn: EvaAttention, x: torch.Tensor, policy: torch.Tensor, rope: torch.Tensor | None
) -> torch.Tensor:
    """``EvaAttention.forward`` with DynamicViT's train-mode attention masking (:func:`masked_attention`)."""
    b, n, c = x.shape
    gate = attn.gate(x).sigmoid() if attn.gate is not None else None
    if attn.qkv is not None:
        q, k, v = biased_qkv(attn, x)
    else:
        q, k, v = (
            proj(x).reshape(b, n, attn.num_heads, -1).transpose(1, 2)
            for proj in (attn.q_proj, attn.k_proj, attn.v_proj)
        )
    q, k = attn.q_norm(q), attn.k_norm(k)
    if rope is not None:
        npt, half = attn.num_prefix_tokens, getattr(attn, "rotate_half", False)
        q = torch.cat([q[:, :, :npt], apply_rot_embed_cat(q[:, :, npt:], rope, half=half)], dim=2).type_as(v)
        k = torch.cat([k[:, :, :npt], apply_rot_embed_cat(k[:, :, npt:], rope, half=half)], dim=2).type_as(v)
    out = attn.norm(masked_attention(q, k, v, policy, attn.scale, attn.attn_drop).transpose(1, 2).reshape(b, n, c))
    if gate is not None:
        out = out * gate
    return attn.proj_drop(attn.proj(out))


def eva_problems(model: nn.Module) -> list[str]:
    """What keeps token reduction from a timm ``Eva`` (nothing: an empty list)."""
    problems = []
    if not all(isinstance(b, (EvaBlock, EvaBlockPostNorm)) and isinstance(b.attn, EvaAttention) for b in model.blocks):
        problems.append("its blocks are not timm EvaBlock/EvaAttention")
    if getattr(model, "rope_mixed", False):
        problems.append("its rotary embeddings differ per block (rope_mixed)")
    if model.patch_drop is not None:
        problems.append("patch dropout is enabled")
    if model.attn_pool is not None:
        problems.append("attention pooling")
    return problems + check_pools(model)


def sparsify_eva(model: Eva, keep_rate: float = 0.7, prune_layers=None) -> Eva:
    """Turn a timm ``Eva`` into DynamicViT in place and return it."""
    return sparsify_family(model, DynamicEvaMixin, eva_problems(model), SUPPORTED_EVA, keep_rate, prune_layers)


FAMILY = register_family(
    Family(
        name="EVA",
        supported=SUPPORTED_EVA,
        recognises=lambda model: isinstance(model, Eva),
        sparsify=sparsify_eva,
        ratio_weight=2.0,  # a plain ViT's recipe
        backbone_lr_scale=0.01,
    )
)
