"""Swin's blocks under asymmetric computation (T-PAMI version of DynamicViT, arXiv 2207.01580): the
shifted-window attention runs on the full NHWC map, the MLP branch is the slow path."""

from __future__ import annotations

import torch
from timm.models.swin_transformer import SwinTransformer, SwinTransformerBlock, SwinTransformerStage
from torch import nn

from dynamicvit.models.hierarchical.asymmetric import BlockKind, register_block_kind

__all__ = ["SwinKind"]


class SwinKind(BlockKind):
    """timm ``SwinTransformerBlock``."""

    name = "swin"
    block, stage, models, channels_first = SwinTransformerBlock, SwinTransformerStage, (SwinTransformer,), False

    def mix(self, blk: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, h, w, c = x.shape
        x = x + blk.drop_path1(blk._attn(blk.norm1(x)))
        x = x.reshape(b, h * w, c)
        return x, x

    def slow(self, blk: nn.Module, y: torch.Tensor) -> torch.Tensor:
        return blk.mlp(blk.norm2(y))

    def drop_path(self, blk: nn.Module) -> nn.Module:
        return blk.drop_path2

    def norm_eps(self, blk: nn.Module) -> float:
        return blk.norm2.eps

    def check_map(self, blocks: nn.Module, x: torch.Tensor) -> None:
        """The stage's windows must tile its map."""
        h, w = x.shape[1], x.shape[2]
        ws = blocks[0].window_size
        if h % ws[0] or w % ws[1]:
            raise ValueError(
                f"the sparsified Swin stage sees a {h}x{w} map that its {ws[0]}x{ws[1]} windows do not divide; "
                f"use an input size whose stage-3 map is a multiple of the window size"
            )


register_block_kind(SwinKind())
