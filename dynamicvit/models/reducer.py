"""What every token-reducing ViT here shares (DynamicViT on each ViT-like family and the methods in
:mod:`dynamicvit.methods`): input checks, embedding, the keep schedule, the forward contract, the heads
that pool patch tokens, and installing a reducing class into a model in place."""

from __future__ import annotations

from itertools import pairwise

import torch
from torch import nn

from dynamicvit.core.interfaces import TokenReducer
from dynamicvit.core.predictor import (
    build_predictors,
    check_keep_rate,
    check_prune_layers,
    cumulative_ratios,
    default_prune_layers,
    keep_count,
    keep_counts,
)
from dynamicvit.core.tokens import POOLS, SparseOutput, check_finite, check_image_batch, in_channels, mixed_class

__all__ = [
    "TokenReductionMixin",
    "check_not_reduced",
    "check_pools",
    "install",
    "reduction_counts",
    "sparsify_family",
]


def reduction_counts(model: nn.Module, keep_rate: float, prune_layers) -> tuple[float, list[int]]:
    """Checked ``(keep_rate, prune_layers)`` for a model with ``blocks`` (default layers: depth/4, /2, 3/4)."""
    depth = len(model.blocks)
    layers = default_prune_layers(depth) if prune_layers is None else prune_layers
    return check_keep_rate(keep_rate), check_prune_layers(layers, depth)


class TokenReductionMixin(TokenReducer):
    """What every token-reducing ViT here shares (DynamicViT and the methods): input checks,
    embedding, the keep schedule, and ``forward(x, decisions=None, return_decisions=False)``.

    Subclasses implement ``forward_sparse(x, decisions) -> (tokens, decisions)``.
    """

    _prune_layers: list[int]
    _keep_rate: float
    _keep_schedule: list[float] | None = None

    @property
    def keep_rate(self) -> float:
        """Per-stage keep ratio rho; stage s keeps int(N * rho**s) patches. Settable (clears a
        :attr:`keep_schedule`)."""
        return self._keep_rate

    @keep_rate.setter
    def keep_rate(self, value: float) -> None:
        self._keep_rate = check_keep_rate(value)
        self._keep_schedule = None

    @property
    def keep_schedule(self) -> list[float]:
        """The fraction of the input patches alive after each stage: ρ, ρ², ρ³ (the paper's schedule) unless
        set to another non-increasing list, e.g. one searched for a MACs target
        (:func:`dynamicvit.methods.schedule_search.search_schedule`). Settable; ``None`` returns to ρ**s."""
        return (
            list(self._keep_schedule)
            if self._keep_schedule
            else cumulative_ratios(self._keep_rate, len(self._prune_layers))
        )

    @keep_schedule.setter
    def keep_schedule(self, fractions: list[float] | None) -> None:
        if fractions is not None:
            fractions = [check_keep_rate(f) for f in fractions]
            if len(fractions) != len(self._prune_layers) or any(b > a for a, b in pairwise(fractions)):
                raise ValueError(
                    f"keep_schedule must give {len(self._prune_layers)} non-increasing fractions in (0, 1], "
                    f"got {fractions}"
                )
        self._keep_schedule = fractions

    @property
    def prune_layers(self) -> list[int]:
        """Block indices before which tokens are reduced."""
        return list(self._prune_layers)

    @property
    def num_patches(self) -> int:
        """Patch tokens at the model's configured image size."""
        return self.patch_embed.num_patches

    def keep_counts(self, num_patches: int | None = None) -> list[int]:
        """Patch tokens kept after each stage for an input of ``num_patches`` patches."""
        n = num_patches or self.num_patches
        if self._keep_schedule is None:
            return keep_counts(n, self._keep_rate, len(self._prune_layers))
        return [keep_count(n, f) for f in self._keep_schedule]

    def keep_targets(self) -> list[float]:
        return self.keep_schedule

    def token_counts(self, num_patches: int | None = None) -> list[int]:
        """Tokens (besides class/distillation/register tokens) alive after each reduction step."""
        return self.keep_counts(num_patches)

    def grid_for(self, image_size: tuple[int, int]) -> tuple[int, int]:
        return self.patch_embed.dynamic_feat_size(image_size)

    def _check_input(self, x: torch.Tensor) -> tuple[int, int]:
        """Clear errors for inputs the model cannot take; returns the patch grid of ``x``."""
        check_image_batch(x, in_channels(self))
        pe = self.patch_embed
        size, ph, pw = tuple(x.shape[-2:]), *pe.patch_size
        if not self.dynamic_img_size and pe.img_size is not None and size != tuple(pe.img_size):
            raise ValueError(
                f"input is {size[0]}x{size[1]} but the model was built for {pe.img_size[0]}x{pe.img_size[1]}; "
                "resize the input, or build the model with img_size=... or dynamic_img_size=True"
            )
        if not getattr(pe, "dynamic_img_pad", False) and (size[0] % ph or size[1] % pw):
            raise ValueError(f"input {size[0]}x{size[1]} is not divisible by the patch size {ph}x{pw}")
        grid = self.grid_for(size)
        if not torch.compiler.is_compiling():  # export/compile: no module state changes in the graph
            self.last_grid = grid
        return grid

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = self._pos_embed(x)
        x = self.patch_drop(x)
        return self.norm_pre(x)

    def forward_sparse(
        self, x: torch.Tensor, decisions: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Check, embed, run :meth:`forward_blocks`, final norm → (tokens, per-stage decisions)."""
        grid = self._check_input(x)
        if decisions is not None and len(decisions) != len(self._prune_layers):
            raise ValueError(f"expected {len(self._prune_layers)} forced decisions, got {len(decisions)}")
        tokens, out = self.forward_blocks(self._embed(x), decisions, grid)
        tokens = self.norm(tokens)
        check_finite(x, tokens[:, 0])  # the class token attends to every patch: a bad pixel reaches it
        return tokens, out

    def forward_blocks(
        self, x: torch.Tensor, decisions: list[torch.Tensor] | None, grid: tuple[int, int]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Embedded tokens of a ``grid`` of patches through the blocks with the method's reductions
        → (tokens, decisions)."""
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_sparse(x)[0]

    def forward(
        self, x: torch.Tensor, decisions: list[torch.Tensor] | None = None, return_decisions: bool = False
    ) -> torch.Tensor | SparseOutput:
        """Class logits; with ``return_decisions`` a :class:`SparseOutput` (DDP-friendly)."""
        feats, out = self.forward_sparse(x, decisions)
        logits = self.head_logits(feats, out)
        return SparseOutput(logits, out, feats) if return_decisions else logits

    def head_logits(self, feats: torch.Tensor, decisions: list[torch.Tensor]) -> torch.Tensor:
        """Logits of the final tokens (the backbone's ``forward_head``)."""
        return self.forward_head(feats)

    def forward_with_decisions(self, x: torch.Tensor, decisions: list[torch.Tensor] | None = None) -> SparseOutput:
        """Logits, per-stage decisions and final tokens (see the module docstring)."""
        return self(x, decisions=decisions, return_decisions=True)


def check_pools(model: nn.Module) -> list[str]:
    """What is wrong with a ViT's head for token reduction (nothing: an empty list)."""
    if model.global_pool == "token" and model.cls_token is None:
        return ["global_pool 'token' without a class token"]
    if model.attn_pool is None and model.global_pool not in ("token", "", *POOLS):
        return [f"global_pool is {model.global_pool!r} (supported: 'token', 'avg', 'max', 'avgmax', 'map')"]
    return []


def check_not_reduced(model: nn.Module) -> None:
    """Refuse a model that a method already reduced (its budget is changed, not reapplied)."""
    if isinstance(model, TokenReductionMixin):
        raise ValueError(f"model is already reduced ({type(model).__name__}); set model.keep_rate to change its budget")


def sparsify_family(
    model: nn.Module, mixin: type, problems: list[str], supported: str, keep_rate: float, prune_layers
) -> nn.Module:
    """DynamicViT for a ViT-like family (EVA, BEiT): refuse an already reduced model or one with
    ``problems`` (naming what the family ``supported``), then :func:`install` ``mixin``."""
    check_not_reduced(model)
    if problems:
        raise TypeError(f"cannot sparsify {type(model).__name__}: {'; '.join(problems)}. Supported: {supported}")
    return install(model, mixin, *reduction_counts(model, keep_rate, prune_layers))


def install(model: nn.Module, mixin: type, rate: float, layers: list[int]) -> nn.Module:
    """Swap ``mixin`` into ``model``'s class and add one predictor per pruning stage (in place)."""
    ref = next(model.parameters())
    predictors = build_predictors(model.embed_dim, [rate] * len(layers))  # each keeps rho of those alive
    model.__class__ = mixed_class(mixin, type(model), "Dynamic")
    model.score_predictor = predictors.to(device=ref.device, dtype=ref.dtype)
    model._prune_layers = layers
    model.keep_rate = rate
    return model
