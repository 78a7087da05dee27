"""ConvNeXt's blocks under asymmetric computation (T-PAMI version of DynamicViT, arXiv 2207.01580): the
7×7 depthwise convolution runs on the full NCHW map, the MLP branch (norm, MLP, layer scale) is the slow path."""

from __future__ import annotations

import torch
from timm.models.convnext import ConvNeXt, ConvNeXtBlock, ConvNeXtStage
from torch import nn

from dynamicvit.models.hierarchical.asymmetric import BlockKind, register_block_kind

__all__ = ["ConvNeXtKind"]


class ConvNeXtKind(BlockKind):
    """timm ``ConvNeXtBlock`` with channels-last MLPs (``conv_mlp=False``)."""

    name = "convnext"
    block, stage, models, channels_first = ConvNeXtBlock, ConvNeXtStage, (ConvNeXt,), True

    def mix(self, blk: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        base = blk.shortcut(x).flatten(2).transpose(1, 2)
        return base, blk.conv_dw(x).flatten(2).transpose(1, 2)

    def slow(self, blk: nn.Module, y: torch.Tensor) -> torch.Tensor:
        out = blk.mlp(blk.norm(y))
        return out * blk.gamma if blk.gamma is not None else out

    def drop_path(self, blk: nn.Module) -> nn.Module:
        return blk.drop_path

    def norm_eps(self, blk: nn.Module) -> float:
        return blk.norm.eps


register_block_kind(ConvNeXtKind())
