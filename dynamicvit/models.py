"""Build sparse models by name, like ``timm.create_model``, or sparsify one you already have."""

from __future__ import annotations

import copy

import timm
from torch import nn

from .checkpoint import load_checkpoint
from .vit import SUPPORTED_VIT, sparsify_vit

__all__ = ["build_timm_model", "create_model", "create_pair", "sparsify", "SUPPORTED"]

SUPPORTED = f"Supported: {SUPPORTED_VIT}."


def sparsify(model: nn.Module, keep_rate: float = 0.7, prune_layers=None) -> nn.Module:
    """Add DynamicViT token pruning to an existing timm model in place and return it.

    Weights are kept; ``model.score_predictor`` holds the new per-stage predictors.
    ``prune_layers`` defaults to blocks depth/4, depth/2, 3·depth/4.
    """
    return sparsify_vit(model, keep_rate=keep_rate, prune_layers=prune_layers)


def create_model(
    name: str,
    keep_rate: float = 0.7,
    prune_layers=None,
    pretrained: bool = False,
    checkpoint_path: str | None = None,
    **timm_kwargs,
) -> nn.Module:
    """``timm.create_model(name, pretrained, **timm_kwargs)`` made sparse.

    ``checkpoint_path`` loads either a sparse checkpoint (backbone + predictors, strict) or a
    dense backbone checkpoint (predictors keep their fresh initialisation).
    """
    model = sparsify(build_timm_model(name, pretrained, **timm_kwargs), keep_rate=keep_rate, prune_layers=prune_layers)
    if checkpoint_path is not None:
        load_checkpoint(model, checkpoint_path)
    return model


def create_pair(name: str, keep_rate: float = 0.7, prune_layers=None, **timm_kwargs) -> tuple[nn.Module, nn.Module]:
    """A dense timm model and its sparsified copy with identical backbone weights, both in eval mode."""
    dense = build_timm_model(name, **timm_kwargs).eval()
    sparse = sparsify(copy.deepcopy(dense), keep_rate=keep_rate, prune_layers=prune_layers)
    return dense, sparse.eval()


def build_timm_model(name: str, pretrained: bool = False, **timm_kwargs) -> nn.Module:
    """``timm.create_model`` with an unknown name reported as a ``ValueError``."""
    try:
        return timm.create_model(name, pretrained=pretrained, **timm_kwargs)
    except RuntimeError as err:
        if "Unknown model" in str(err):
            raise ValueError(f"unknown model {name!r}. {SUPPORTED}") from None
        raise
