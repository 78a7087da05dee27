"""Semantic segmentation on a (sparse) backbone: a light FPN head and mIoU.

The backbone is a timm ``features_only`` ConvNeXt/Swin (strides 4/8/16/32) or a plain timm ViT.
Sparsifying a ConvNeXt/Swin (:func:`dynamicvit.sparsify`) keeps every feature map's shape, so the
same head serves the dense and the sparse backbone; that is the point of asymmetric computation
(the journal version of DynamicViT, arXiv 2207.01580). A pruned ViT loses its dropped tokens;
token restoration (as in SViT, Liu et al., arXiv 2306.07050: a dropped token keeps its features from the
stage that dropped it and all are put back at the output) gives the head the full map again.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import nn

from dynamicvit.core.flops import count_flops
from dynamicvit.core.interfaces import find_reducer
from dynamicvit.core.tokens import SparseOutput, check_finite, check_image_batch, in_channels, nchw_maps
from dynamicvit.models.registry import keeps_maps, segments_tokens
from dynamicvit.tasks.base import Task
from dynamicvit.tasks.logits import evaluate_logits
from dynamicvit.tasks.registry import register_task

__all__ = ["FPNHead", "Segmenter", "ViTSegmenter", "build_segmenter", "confusion_matrix", "miou"]


class FPNHead(nn.Module):
    """Feature pyramid: 1×1 laterals to ``dim`` channels, top-down sum, 3×3 smoothing, all levels
    upsampled to the finest and summed, 1×1 classifier (stride 4 logits)."""

    def __init__(self, in_channels: list[int], num_classes: int, dim: int = 32) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in in_channels)
        self.smooth = nn.ModuleList(
            nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, bias=False), nn.BatchNorm2d(dim), nn.ReLU(inplace=True))
            for _ in in_channels
        )
        self.head = nn.Conv2d(dim, num_classes, 1)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        levels = [lat(f) for lat, f in zip(self.lateral, feats, strict=True)]
        for i in range(len(levels) - 2, -1, -1):
            levels[i] = levels[i] + F.interpolate(levels[i + 1], size=levels[i].shape[-2:], mode="nearest")
        size = levels[0].shape[-2:]
        fused = sum(
            F.interpolate(s(x), size=size, mode="bilinear", align_corners=False)
            for s, x in zip(self.smooth, levels, strict=True)
        )
        return self.head(fused)


class Segmenter(nn.Module):
    """``backbone`` (timm features_only) + :class:`FPNHead`; logits at the input resolution.

    Same call convention as the sparse classifiers: ``forward(x, decisions=None,
    return_decisions=False)``; ``forward_features`` gives the feature maps, ``forward_head`` the
    logits, so :class:`dynamicvit.DistillationLoss` can distil from a dense segmenter.
    """

    task = "segment"  # its contract: SegmentTask
    task_model = True  # methods reduce its backbone

    def __init__(self, backbone: nn.Module, num_classes: int, input_size: tuple[int, int, int], dim: int = 32):
        super().__init__()
        self.backbone = backbone
        self.channels = list(backbone.feature_info.channels())
        self.decode = FPNHead(self.channels, num_classes, dim)
        self.pretrained_cfg = {"input_size": tuple(input_size)}  # what count_flops and export feed it

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return nchw_maps(self.backbone(x), self.channels)

    def forward_head(self, feats: list[torch.Tensor], size: tuple[int, int] | None = None) -> torch.Tensor:
        logits = self.decode(feats)
        size = size or tuple(4 * s for s in logits.shape[-2:])
        return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)

    def forward(
        self, x: torch.Tensor, decisions: list[torch.Tensor] | None = None, return_decisions: bool = False
    ) -> torch.Tensor | SparseOutput:
        check_image_batch(x, in_channels(self))
        stage = find_reducer(self.backbone)
        if stage is None:
            if decisions is not None:
                raise ValueError("forced decisions need a sparsified backbone")
            feats = self.forward_features(x)
        else:
            with stage.forcing(decisions):
                feats = self.forward_features(x)
        logits = self.forward_head(feats, tuple(x.shape[-2:]))
        check_finite(x, logits)
        if not return_decisions:
            return logits
        return SparseOutput(logits, stage.last_decisions if stage is not None else [], feats[-1])


class ViTSegmenter(Segmenter):
    """A plain timm ViT (``num_classes=0``) + :class:`FPNHead` on its patch-token map (one level, at the
    patch stride). On a DynamicViT backbone the dropped tokens are restored
    (:meth:`~dynamicvit.models.vit.DynamicViTMixin.forward_restored`): each keeps its features from the stage
    that dropped it, so the map is complete and the head is the dense model's.

    ``forward_features`` gives the (B, N, C) patch tokens (what the distillation's token term compares),
    ``forward_head`` the logits; ``last_grid`` is the token grid of the latest forward.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, input_size: tuple[int, int, int], dim: int = 32):
        nn.Module.__init__(self)
        self.backbone = backbone
        self.channels = [backbone.embed_dim]
        self.decode = FPNHead(self.channels, num_classes, dim)
        self.pretrained_cfg = {"input_size": tuple(input_size)}
        self.last_grid = backbone.patch_embed.dynamic_feat_size(tuple(input_size[-2:]))

    def _tokens(self, x: torch.Tensor, decisions: list[torch.Tensor] | None) -> tuple[torch.Tensor, list]:
        backbone = self.backbone
        if not torch.compiler.is_compiling():
            self.last_grid = backbone.patch_embed.dynamic_feat_size(tuple(x.shape[-2:]))
        if hasattr(backbone, "forward_restored"):
            return backbone.forward_restored(x, decisions)
        if find_reducer(backbone) is not None:
            raise TypeError(f"{backbone.method} drops tokens without restoring them; segmentation needs dynamicvit")
        if decisions is not None:
            raise ValueError("forced decisions need a sparsified backbone")
        return backbone.forward_features(x)[:, backbone.num_prefix_tokens :], []

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._tokens(x, None)[0]

    def forward_head(self, tokens: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        gh, gw = self.last_grid
        grid = tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], gh, gw)
        logits = self.decode([grid])
        ph, pw = self.backbone.patch_embed.patch_size
        return F.interpolate(logits, size=size or (gh * ph, gw * pw), mode="bilinear", align_corners=False)

    def forward(
        self, x: torch.Tensor, decisions: list[torch.Tensor] | None = None, return_decisions: bool = False
    ) -> torch.Tensor | SparseOutput:
        check_image_batch(x, in_channels(self))
        tokens, out = self._tokens(x, decisions)
        logits = self.forward_head(tokens, tuple(x.shape[-2:]))
        return SparseOutput(logits, out, tokens) if return_decisions else logits


def build_segmenter(backbone: nn.Module, num_classes: int, input_size: tuple[int, int, int]) -> Segmenter:
    """A :class:`Segmenter` on a timm ``features_only`` backbone (ConvNeXt/Swin), or a
    :class:`ViTSegmenter` on a plain timm ViT."""
    if segments_tokens(backbone):
        return ViTSegmenter(backbone, num_classes, input_size)
    if not hasattr(backbone, "feature_info"):
        raise TypeError("segmentation needs a timm features_only ConvNeXt/Swin or a timm ViT backbone")
    return Segmenter(backbone, num_classes, input_size)


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) counts, rows = target class, columns = predicted class."""
    index = target.flatten() * num_classes + pred.flatten()
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def miou(confusion: torch.Tensor) -> float:
    """Mean intersection-over-union (%) over the classes that occur in the targets or predictions."""
    confusion = confusion.double()
    inter = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - inter
    present = union > 0
    return float(100 * (inter[present] / union[present]).mean())


class SegmentTask(Task):
    """Semantic segmentation: an FPN head on a ConvNeXt/Swin's maps or on a ViT's restored tokens, per-pixel
    cross-entropy, mIoU."""

    name = "segment"
    picture = "inputs, labels, predictions and kept locations"
    help = "FPN head on a ConvNeXt/Swin's maps or a ViT's restored tokens, per-pixel CE, mIoU"

    def build_dense(self, make, name, head_classes, input_size, **kwargs) -> nn.Module:
        plain = make(name, **{**kwargs, "num_classes": 0})
        if segments_tokens(plain):
            return build_segmenter(plain, head_classes, input_size)
        if not keeps_maps(plain):
            raise ValueError(f"--task segment needs a ConvNeXt, Swin or plain ViT backbone, got {name!r}")
        return build_segmenter(make(name, features_only=True, **kwargs), head_classes, input_size)

    def evaluate(self, model, dataset, cfg, batch_size, decisions_fn, reference) -> dict:
        confusion: torch.Tensor | None = None

        def accumulate(pred: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor) -> None:
            nonlocal confusion
            counts = confusion_matrix(pred, labels, logits.shape[1])
            confusion = counts if confusion is None else confusion + counts

        out = evaluate_logits(model, dataset, cfg, batch_size, decisions_fn, accumulate)
        if confusion is not None:
            out["miou"] = miou(confusion)
            out["backbone_gmacs"] = count_flops(model.backbone, img_size=tuple(dataset[0][0].shape[-2:])).gmacs
        return out

    def save_picture(self, model: nn.Module, dataset, path: str | os.PathLike, count: int = 4) -> None:
        from dynamicvit.draw.dense import save_segmentation_grid  # matplotlib only when drawing

        save_segmentation_grid(model, dataset, path, count)


register_task(SegmentTask())
