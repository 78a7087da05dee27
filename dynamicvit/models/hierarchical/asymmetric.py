"""Asymmetric computation for hierarchical models (the machinery; each family's blocks are read by a
:class:`BlockKind` in its own module: :mod:`~dynamicvit.models.hierarchical.convnext`,
:mod:`~dynamicvit.models.hierarchical.swin`).

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
from torch import nn

from dynamicvit.core.interfaces import TokenReducer, find_reducer
from dynamicvit.core.predictor import (
    check_keep_rate,
    decide,
    keep_count,
)
from dynamicvit.core.registry import Registry
from dynamicvit.core.tokens import (
    PackedTokens,
    SparseOutput,
    check_finite,
    check_image_batch,
    forced_at,
    forced_keep,
    in_channels,
    index_mask,
    iter_stages,
    per_image,
)

__all__ = [
    "BLOCK_KINDS",
    "BlockKind",
    "DynamicFeaturesMixin",
    "DynamicHierarchicalMixin",
    "DynamicStageMixin",
    "FastPath",
    "adaptive_block",
    "check_hierarchical_input",
    "check_keep_ratios",
    "default_keep_ratios",
    "register_block_kind",
]


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


class BlockKind:
    """How asymmetric computation reads one family's blocks: the spatial mixer on the full map, the
    per-location branch (the *slow path*), and the map layout. A family subclasses it in its own module and
    registers an instance (:func:`register_block_kind`)."""

    name: str  # its name in BLOCK_KINDS
    block: type  # the family's timm block class
    stage: type  # its stage class
    models: tuple[type, ...]  # its classifier classes
    channels_first: bool  # NCHW maps (else NHWC)

    def mix(self, blk: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(base, y): tokens (B, H·W, C) to add the branch to, and the branch's input."""
        raise NotImplementedError

    def slow(self, blk: nn.Module, y: torch.Tensor) -> torch.Tensor:
        """The block's original per-location branch (norm, MLP, layer scale)."""
        raise NotImplementedError

    def drop_path(self, blk: nn.Module) -> nn.Module:
        """The drop-path module of the per-location branch."""
        raise NotImplementedError

    def norm_eps(self, blk: nn.Module) -> float:
        """The epsilon of the branch's LayerNorm (the added fast paths and predictors take it)."""
        raise NotImplementedError

    def check_map(self, blocks: nn.Module, x: torch.Tensor) -> None:
        """Refuse a map the stage's blocks cannot take (nothing by default)."""

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The map as tokens (B, H·W, C)."""
        return x.flatten(2).transpose(1, 2) if self.channels_first else x.flatten(1, 2)

    def grid(self, x: torch.Tensor) -> tuple[int, int]:
        """(H, W) of the map."""
        return tuple(x.shape[-2:]) if self.channels_first else tuple(x.shape[1:3])

    def to_map(self, tokens: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Tokens (B, H·W, C) back into the map layout of ``like``."""
        if self.channels_first:
            b, _, h, w = like.shape
            return tokens.transpose(1, 2).reshape(b, -1, h, w)
        return tokens.reshape(like.shape[0], like.shape[1], like.shape[2], -1)


def _fast(blk: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """The cheap path every family shares (:class:`FastPath`, added to each block of the sparse stage)."""
    return blk.fast_path(y)


def adaptive_block(kind: BlockKind, blk: nn.Module, x: torch.Tensor, decision) -> torch.Tensor:
    """One block of ``kind`` with asymmetric computation. ``decision``: train – hard mask (B, H·W); eval –
    the rows (slow, fast) of the batch flattened to (B·H·W, C) that take each path, so each path runs once
    on its rows of the whole batch, whatever each image's share."""
    base, y = kind.mix(blk, x)
    paths = (kind.slow, _fast)
    if isinstance(decision, torch.Tensor):
        m = decision.unsqueeze(-1).to(y.dtype)
        branch = paths[0](blk, y) * m + paths[1](blk, y) * (1 - m)
    else:
        rows = y.reshape(-1, y.shape[-1])
        flat = rows.new_empty(rows.shape)
        for index, path in zip(decision, paths, strict=True):  # a path with no rows runs on an empty batch
            flat.index_copy_(0, index, path(blk, rows.index_select(0, index)).to(flat.dtype))
        branch = flat.view(y.shape)
    return kind.to_map(base + kind.drop_path(blk)(branch), x)


def _eval_rows(decision, hw: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(slow, fast) rows of the flattened batch, each in ascending order, for eval decisions: kept indices
    (B, k) (fixed mode) or one 1-D index tensor per image (adaptive mode). In the fixed mode both sizes follow
    from the shapes (B·k and B·(hw − k)), with no data-dependent ``nonzero``, so the model exports (ONNX)."""
    slow = index_mask(decision, hw)
    if not isinstance(decision, torch.Tensor):
        return slow.flatten().nonzero().squeeze(1), (~slow).flatten().nonzero().squeeze(1)
    k = decision.shape[1]
    offsets = torch.arange(slow.shape[0], device=slow.device).unsqueeze(1) * hw
    return _first_positions(slow, k, offsets), _first_positions(~slow, hw - k, offsets)


def _first_positions(mask: torch.Tensor, count: int, offsets: torch.Tensor) -> torch.Tensor:
    """The ``count`` positions set in each row of ``mask`` (B, hw), ascending, as flat row indices: top-k of
    a rank that falls with the position (exportable, unlike ``nonzero`` or a stable sort)."""
    if count == 0:
        return offsets.new_empty(0)
    hw = mask.shape[1]
    rank = mask.float() * torch.arange(hw, 0, -1, device=mask.device, dtype=torch.float32)
    return (rank.topk(count, dim=1).indices + offsets).flatten()


class DynamicStageMixin(TokenReducer):
    """A hierarchical stage with predictors and adaptive blocks (see the module docstring).

    Inside ``with stage.forcing(decisions):`` the given decisions replace the predictors'
    choices; ``last_decisions`` holds the decisions of the latest forward, ``last_grid`` its H×W.
    """

    method = "dynamicvit"
    supports_adaptive = True
    score_predictor: nn.ModuleList
    keep_ratios: list[float]
    prune_layers: list[int]
    stride: int  # input pixels per location of the stage's map
    kind: BlockKind  # how its blocks are read
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
        kind = self.kind
        h, w = kind.grid(x)
        kind.check_map(self.blocks, x)
        counts, forced = self.keep_counts(h * w), self.forced_decisions
        adaptive = not self.training and self.per_image
        rows, decisions, scores = None, [], []
        for s, blk in iter_stages(self.blocks, self.prune_layers):
            if s is not None:  # each predictor selects afresh from all locations
                tokens = kind.tokens(x)
                if adaptive:
                    decision, score = self._adaptive_decision(s, tokens, forced_at(forced, s))
                    scores.append(score)
                else:
                    decision = decide(
                        self.score_predictor[s],
                        tokens,
                        counts[s],
                        self.training,
                        None,
                        forced_at(forced, s),
                        rule=self.mask_rule,
                        explore=self.explore,
                    )
                decisions.append(decision)
                # once per decision, not once per block
                rows = decision if self.training else _eval_rows(decision, h * w)
            x = blk(x) if rows is None else adaptive_block(kind, blk, x, rows)
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
            keep = self.keep_rule.image_keep(self, stage, score, seg, tokens, b, [])
        grid = torch.arange(n, device=tokens.device).repeat(b)
        return per_image(grid[keep], seg[keep], b), (score, seg)


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
        """The sparsified stage's keep mode (a keep rule with ``hierarchical`` support, see :class:`TokenReducer`)."""
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


BLOCK_KINDS: Registry[BlockKind] = Registry("block kind")


def register_block_kind(kind: BlockKind) -> BlockKind:
    """Add a family's :class:`BlockKind` to :data:`BLOCK_KINDS`: the hierarchical family then recognises and
    sparsifies models with its blocks."""
    return BLOCK_KINDS.register(kind.name, kind)
