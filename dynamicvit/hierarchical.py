"""Asymmetric computation for hierarchical models: timm ``ConvNeXt`` and ``SwinTransformer``.

The journal version of DynamicViT (Rao et al., "Dynamic Spatial Sparsification for Efficient
Vision Transformers and Convolutional Neural Networks", T-PAMI 2023, arXiv 2207.01580) extends
dynamic spatial sparsification to CNNs and hierarchical ViTs with asymmetric computation.

These models cannot drop locations without breaking their feature maps, so in the
sparsified stage (the third, the long one) every block keeps its spatial mixer (7×7
depthwise conv / shifted-window attention) on the full map, then runs its original MLP
branch (the *slow path*) on the important locations only and a cheap *fast path*
(LayerNorm → Linear(C, C), scaled by a learnable gamma initialised at 1e-6) on the rest.
The map keeps its H×W structure, so the model still serves dense prediction; timm's
``features_only`` models are sparsified the same way.

Predictors run before some blocks of the stage (``prune_layers``, stage-local block indices);
each selects afresh from all H·W locations, keeping the absolute ratios ``keep_ratios``
(default ``[rho, rho - 0.2, rho - 0.4]``); a predictor's choice holds until the next one.

The train/eval contract (one, unlike the release):

* **train mode** – both paths run on every location and are blended by the hard 0/1 mask
  (Gumbel straight-through): ``m · slow + (1 − m) · fast``;
* **eval mode** – the slow path runs on the ``int(H·W·r)`` best-scored locations only, the
  fast path on the others, and both are scattered back into the map. Decisions are
  indices (B, k) into the stage's H·W grid in descending score order.

With the same hard mask both modes give the same output (tested).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from timm.models.convnext import ConvNeXt, ConvNeXtBlock, ConvNeXtStage
from timm.models.swin_transformer import SwinTransformer, SwinTransformerBlock, SwinTransformerStage
from torch import nn

from .base import Family, TokenReducer, find_reducer
from .predictor import (
    build_predictors,
    check_keep_rate,
    check_prune_layers,
    decide,
    default_prune_layers,
    keep_count,
    threshold_keep,
)
from .tokens import (
    PackedTokens,
    SparseOutput,
    check_finite,
    check_image_batch,
    forced_at,
    forced_keep,
    in_channels,
    index_mask,
    iter_stages,
    mixed_class,
    per_image,
)

__all__ = [
    "FAMILY",
    "SUPPORTED_HIERARCHICAL",
    "DynamicFeaturesMixin",
    "check_hierarchical_input",
    "DEFAULT_PRUNE_LAYERS",
    "FastPath",
    "DynamicStageMixin",
    "DynamicHierarchicalMixin",
    "default_keep_ratios",
    "check_keep_ratios",
    "sparsify_hierarchical",
    "is_hierarchical",
]

SUPPORTED_HIERARCHICAL = (
    "timm ConvNeXt (channels-last MLP blocks: convnext_tiny/small/base/large, ...) and SwinTransformer "
    "(swin_tiny/small/base_patch4_window7_224, ...), classifiers or features_only"
)


def default_keep_ratios(keep_rate: float, stages: int = 3) -> list[float]:
    """The journal version's absolute keep ratios: ``[rho, rho - 0.2, rho - 0.4]``."""
    return [round(keep_rate - 0.2 * s, 6) for s in range(stages)]


def check_keep_ratios(ratios: Sequence[float]) -> list[float]:
    """Each ratio in (0, 1], non-increasing; otherwise a clear error saying what to pass."""
    values = [float(r) for r in ratios]
    if not values:
        raise ValueError("keep ratios must name at least one stage")
    if any(not 0 < r <= 1 for r in values):
        raise ValueError(
            f"keep ratios {values} leave no locations or exceed 1: each must lie in (0, 1] "
            "(the default [rho, rho-0.2, rho-0.4] needs rho > 0.4; pass keep_ratios=[...] otherwise)"
        )
    if any(b > a for a, b in zip(values, values[1:], strict=False)):
        raise ValueError(f"keep ratios must not increase from one predictor to the next, got {values}")
    return values


class FastPath(nn.Module):
    """The cheap path for unimportant locations: ``gamma · Linear(LayerNorm(x))`` per location.

    ``eps`` is the LayerNorm's epsilon; :func:`sparsify_hierarchical` uses the backbone's own."""

    def __init__(self, dim: int, init_scale: float = 1e-6, eps: float = 1e-5) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.fc = nn.Linear(dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), init_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(x)) * self.gamma


# -- the two families: mixer on the full map, then the per-location branch -----------------
def _mix(blk: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(base, y): tokens (B, H·W, C) to add the branch to, and the branch's input."""
    if isinstance(blk, ConvNeXtBlock):
        base = blk.shortcut(x).flatten(2).transpose(1, 2)
        return base, blk.conv_dw(x).flatten(2).transpose(1, 2)
    b, h, w, c = x.shape
    x = x + blk.drop_path1(blk._attn(blk.norm1(x)))
    x = x.reshape(b, h * w, c)
    return x, x


def _slow(blk: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """The block's original per-location branch (norm, MLP, layer scale)."""
    if isinstance(blk, ConvNeXtBlock):
        out = blk.mlp(blk.norm(y))
        return out * blk.gamma if blk.gamma is not None else out
    return blk.mlp(blk.norm2(y))


def _fast(blk: nn.Module, y: torch.Tensor) -> torch.Tensor:
    return blk.fast_path(y)


def _drop_path(blk: nn.Module) -> nn.Module:
    return blk.drop_path if isinstance(blk, ConvNeXtBlock) else blk.drop_path2


def _to_map(blk: nn.Module, tokens: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Tokens (B, H·W, C) back into the family's map layout (NCHW ConvNeXt, NHWC Swin)."""
    if isinstance(blk, ConvNeXtBlock):
        b, _, h, w = like.shape
        return tokens.transpose(1, 2).reshape(b, -1, h, w)
    return tokens.reshape(like.shape[0], like.shape[1], like.shape[2], -1)


def _map_tokens(x: torch.Tensor, channels_first: bool) -> torch.Tensor:
    return x.flatten(2).transpose(1, 2) if channels_first else x.flatten(1, 2)


def adaptive_block(blk: nn.Module, x: torch.Tensor, decision) -> torch.Tensor:
    """One block with asymmetric computation. ``decision``: train – hard mask (B, H·W); eval – the
    rows (slow, fast) of the batch flattened to (B·H·W, C) that take each path, so each path runs once
    on its rows of the whole batch, whatever each image's share."""
    base, y = _mix(blk, x)
    if isinstance(decision, torch.Tensor):
        m = decision.unsqueeze(-1).to(y.dtype)
        branch = _slow(blk, y) * m + _fast(blk, y) * (1 - m)
    else:
        rows = y.reshape(-1, y.shape[-1])
        flat = rows.new_empty(rows.shape)
        for index, path in zip(decision, (_slow, _fast), strict=True):
            if index.numel():
                flat.index_copy_(0, index, path(blk, rows.index_select(0, index)).to(flat.dtype))
        branch = flat.view(y.shape)
    return _to_map(blk, base + _drop_path(blk)(branch), x)


def _eval_rows(decision, hw: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(slow, fast) rows of the flattened batch for eval decisions: kept indices (B, k) (fixed mode) or
    one 1-D index tensor per image (adaptive mode)."""
    slow = index_mask(decision, hw).flatten()
    return slow.nonzero().squeeze(1), (~slow).nonzero().squeeze(1)


class DynamicStageMixin(TokenReducer):
    """A ConvNeXt/Swin stage with predictors and adaptive blocks (see the module docstring).

    Inside ``with stage.forcing(decisions):`` the given decisions replace the predictors'
    choices; ``last_decisions`` holds the decisions of the latest forward, ``last_grid`` its H×W.
    """

    method = "dynamicvit"
    supports_adaptive = True
    score_predictor: nn.ModuleList
    keep_ratios: list[float]
    prune_layers: list[int]
    stride: int  # input pixels per location of the stage's map
    forced_decisions: list[torch.Tensor] | None = None
    last_decisions: list[torch.Tensor] = []
    last_keep_scores: list[tuple[torch.Tensor, torch.Tensor]] = []

    @property
    def last_locations(self) -> int:
        """Locations (H·W) of the stage's map in the latest forward."""
        return self.last_tokens

    def keep_counts(self, locations: int) -> list[int]:
        return [keep_count(locations, r) for r in self.keep_ratios]

    def keep_targets(self) -> list[float]:
        return list(self.keep_ratios)

    def token_counts(self, num_tokens: int | None = None) -> list[int]:
        """Locations that take the slow path after each predictor."""
        return self.keep_counts(num_tokens or self.last_tokens)

    def grid_for(self, image_size: tuple[int, int]) -> tuple[int, int]:
        return image_size[0] // self.stride, image_size[1] // self.stride

    @contextlib.contextmanager
    def forcing(self, decisions: list[torch.Tensor] | None):
        """Use ``decisions`` instead of the predictors for the forwards inside the block."""
        if decisions is not None and len(decisions) != len(self.prune_layers):
            raise ValueError(f"expected {len(self.prune_layers)} forced decisions, got {len(decisions)}")
        self.forced_decisions = decisions
        try:
            yield self
        finally:
            self.forced_decisions = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        channels_first = isinstance(self.blocks[0], ConvNeXtBlock)
        h, w = x.shape[-2:] if channels_first else x.shape[1:3]
        if not channels_first:
            _check_windows(self.blocks, x)
        counts, forced = self.keep_counts(h * w), self.forced_decisions
        adaptive = not self.training and self.keep_mode == "adaptive"
        rows, decisions, scores = None, [], []
        for s, blk in iter_stages(self.blocks, self.prune_layers):
            if s is not None:  # each predictor selects afresh from all locations
                tokens = _map_tokens(x, channels_first)
                if adaptive:
                    decision, score = self._adaptive_decision(s, tokens, forced_at(forced, s))
                    scores.append(score)
                else:
                    decision = decide(
                        self.score_predictor[s], tokens, counts[s], self.training, None, forced_at(forced, s)
                    )
                decisions.append(decision)
                # once per decision, not once per block
                rows = decision if self.training else _eval_rows(decision, h * w)
            x = blk(x) if rows is None else adaptive_block(blk, x, rows)
        self.last_decisions, self.last_grid = decisions, (h, w)
        if adaptive and not torch.compiler.is_compiling():
            self.last_keep_scores = scores
        return x

    def _adaptive_decision(self, stage: int, tokens: torch.Tensor, forced) -> tuple[list[torch.Tensor], tuple]:
        """Per image, the locations whose slow-path probability exceeds the stage's threshold (at least
        one), as one index tensor per image; and the (scores, image ids) they came from."""
        b, n, _ = tokens.shape
        score = self.score_predictor[stage].keep_score(tokens).flatten()
        seg = torch.arange(b, device=tokens.device).repeat_interleave(n)
        if forced is not None:
            packed = PackedTokens.pack(tokens, 0)
            keep = forced_keep(forced, packed, packed.patch_rows(), n)
        else:
            keep = threshold_keep(score, seg, b, self.thresholds[stage])
        grid = torch.arange(n, device=tokens.device).repeat(b)
        return per_image(grid[keep], seg[keep], b), (score, seg)


def _check_windows(blocks: nn.Module, x: torch.Tensor) -> None:
    h, w = x.shape[1], x.shape[2]
    ws = blocks[0].window_size
    if h % ws[0] or w % ws[1]:
        raise ValueError(
            f"the sparsified Swin stage sees a {h}x{w} map that its {ws[0]}x{ws[1]} windows do not divide; "
            f"use an input size whose stage-3 map is a multiple of the window size"
        )


class DynamicHierarchicalMixin:
    """Model-level API of a sparsified ConvNeXt/Swin classifier, like DynamicViT's."""

    @property
    def dynamic_stage(self) -> nn.Module:
        """The sparsified stage (predictors, adaptive blocks)."""
        return find_reducer(self)

    @property
    def keep_rate(self) -> float:
        """The first predictor's keep ratio rho; setting it sets the ratios ``[rho, rho-0.2, rho-0.4, ...]``."""
        return self.dynamic_stage.keep_ratios[0]

    @keep_rate.setter
    def keep_rate(self, value: float) -> None:
        self.keep_ratios = default_keep_ratios(check_keep_rate(value), len(self.prune_layers))

    @property
    def keep_ratios(self) -> list[float]:
        return list(self.dynamic_stage.keep_ratios)

    @keep_ratios.setter
    def keep_ratios(self, ratios: Sequence[float]) -> None:
        self.dynamic_stage.keep_ratios = check_keep_ratios(ratios)

    @property
    def prune_layers(self) -> list[int]:
        return list(self.dynamic_stage.prune_layers)

    @property
    def score_predictor(self) -> nn.ModuleList:
        return self.dynamic_stage.score_predictor

    @property
    def keep_mode(self) -> str:
        """The sparsified stage's keep mode (``"fixed"`` or ``"adaptive"``, see :class:`TokenReducer`)."""
        return self.dynamic_stage.keep_mode

    @keep_mode.setter
    def keep_mode(self, mode: str) -> None:
        self.dynamic_stage.keep_mode = mode

    @property
    def thresholds(self) -> list[float]:
        return self.dynamic_stage.thresholds

    @thresholds.setter
    def thresholds(self, values) -> None:
        self.dynamic_stage.thresholds = values

    def forward(
        self, x: torch.Tensor, decisions: list[torch.Tensor] | None = None, return_decisions: bool = False
    ) -> torch.Tensor | SparseOutput:
        """Class logits; with ``return_decisions`` a :class:`SparseOutput` whose ``features`` is the final map."""
        check_hierarchical_input(self, x)
        with self.dynamic_stage.forcing(decisions) as stage:
            feats = self.forward_features(x)
        logits = self.forward_head(feats)
        check_finite(x, logits)
        return SparseOutput(logits, stage.last_decisions, feats) if return_decisions else logits

    def forward_with_decisions(self, x: torch.Tensor, decisions: list[torch.Tensor] | None = None) -> SparseOutput:
        return self(x, decisions=decisions, return_decisions=True)


class DynamicFeaturesMixin:
    """A sparsified timm ``features_only`` ConvNeXt/Swin: the classifier's input checks around its maps."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        check_hierarchical_input(self, x)
        feats = super().forward(x)
        check_finite(x, feats[-1])
        return feats


def check_hierarchical_input(model: nn.Module, x: torch.Tensor) -> None:
    """Clear errors for inputs a ConvNeXt/Swin cannot take: not (B, C, H, W), wrong channels, a size a
    strict Swin was not built for, smaller than the total stride."""
    check_image_batch(x, in_channels(model))
    embed = getattr(model, "patch_embed", None) or next(
        (m for name, m in model.named_modules() if name.endswith("patch_embed")), None
    )
    size, strict = getattr(embed, "img_size", None), getattr(embed, "strict_img_size", False)
    if size is not None and strict and tuple(x.shape[-2:]) != tuple(size):
        raise ValueError(
            f"input is {x.shape[-2]}x{x.shape[-1]} but this Swin model was built for {size[0]}x{size[1]}; "
            "build it with img_size=... for other sizes"
        )
    if min(x.shape[-2:]) < 32:
        raise ValueError(f"input {x.shape[-2]}x{x.shape[-1]} is smaller than the model's total stride 32")


def _stages(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (ConvNeXtStage, SwinTransformerStage))]


def is_hierarchical(model: nn.Module) -> bool:
    """Whether ``model`` (classifier or timm features_only net) has ConvNeXt/Swin stages."""
    return bool(_stages(model))


def _stage_stride(model: nn.Module, stage: int) -> int:
    """Input pixels per location of ``stage``'s map, from timm's feature info (4, 8, 16, 32 by default)."""
    info = getattr(model, "feature_info", None)
    entries = getattr(info, "info", info)
    return int(entries[stage]["reduction"]) if entries else 2 ** (stage + 2)


DEFAULT_PRUNE_LAYERS = {9: [1, 2, 3], 6: [1, 2, 3], 27: [3, 6, 9], 18: [2, 4, 6]}  # the journal version's


def sparsify_hierarchical(
    model: nn.Module,
    keep_rate: float = 0.7,
    prune_layers: Sequence[int] | None = None,
    keep_ratios: Sequence[float] | None = None,
    stage: int = 2,
) -> nn.Module:
    """Give a timm ConvNeXt/Swin (classifier or ``features_only``) asymmetric computation in
    ``stage`` (default the third) in place and return it. Predictors before stage-local blocks
    ``prune_layers`` (the journal version's per-depth defaults); ratios default to
    ``[rho, rho-0.2, rho-0.4]``."""
    stages = _stages(model)
    if not stages:
        raise TypeError(f"{type(model).__name__} is not supported; supported: {SUPPORTED_HIERARCHICAL}")
    if not 0 <= stage < len(stages):
        raise ValueError(f"stage must be in [0, {len(stages) - 1}], got {stage}")
    target = stages[stage]
    if isinstance(target, DynamicStageMixin):
        raise ValueError("model is already sparsified; set model.keep_ratios to change its budget")
    blocks = list(target.blocks)
    if not all(isinstance(b, (ConvNeXtBlock, SwinTransformerBlock)) for b in blocks):
        raise TypeError(f"stage {stage} holds blocks other than timm's; supported: {SUPPORTED_HIERARCHICAL}")
    if any(getattr(b, "use_conv_mlp", False) for b in blocks):
        raise TypeError("ConvNeXt with conv_mlp=True is not supported (its MLP runs on NCHW maps)")
    depth = len(blocks)
    if prune_layers is None:
        prune_layers = DEFAULT_PRUNE_LAYERS.get(depth) or default_prune_layers(depth)
    layers = check_prune_layers(prune_layers, depth, lowest=0)
    rate = check_keep_rate(keep_rate)
    ratios = check_keep_ratios(keep_ratios if keep_ratios is not None else default_keep_ratios(rate, len(layers)))
    if len(ratios) != len(layers):
        raise ValueError(f"{len(ratios)} keep ratios for {len(layers)} prune layers")
    dim = blocks[0].mlp.fc1.in_features
    ref = next(target.parameters())
    # the added LayerNorms take the block's own epsilon (ConvNeXt 1e-6, Swin 1e-5), as the release's do
    eps = (blocks[0].norm if isinstance(blocks[0], ConvNeXtBlock) else blocks[0].norm2).eps
    predictors = build_predictors(dim, ratios, eps)  # each selects afresh from all locations
    for blk in blocks[layers[0] :]:
        blk.fast_path = FastPath(dim, eps=eps).to(device=ref.device, dtype=ref.dtype)
    target.__class__ = mixed_class(DynamicStageMixin, type(target), "Dynamic")
    target.score_predictor = predictors.to(device=ref.device, dtype=ref.dtype)
    target.prune_layers, target.keep_ratios = layers, ratios
    target.stride = _stage_stride(model, stage)
    if isinstance(model, (ConvNeXt, SwinTransformer)):
        model.__class__ = mixed_class(DynamicHierarchicalMixin, type(model), "Dynamic")
    elif hasattr(model, "feature_info"):  # timm features_only wrapper
        model.__class__ = mixed_class(DynamicFeaturesMixin, type(model), "Dynamic")
    return model


FAMILY = Family(
    name="ConvNeXt/Swin",
    supported=SUPPORTED_HIERARCHICAL,
    recognises=is_hierarchical,
    sparsify=sparsify_hierarchical,
    ratio_weight=10.0,  # the journal version's keep-ratio weight for hierarchical models
    backbone_lr_scale=0.2,
    options=("keep_ratios", "stage"),
)
