"""Build sparse models by name, like ``timm.create_model``, or sparsify one you already have."""

from __future__ import annotations

import copy

import timm
from torch import nn

from .checkpoint import load_checkpoint
from .hierarchical import SUPPORTED_HIERARCHICAL, is_hierarchical, sparsify_hierarchical
from .vit import SUPPORTED_VIT, sparsify_vit

__all__ = ["build_timm_model", "create_model", "create_pair", "sparsify", "SUPPORTED"]

SUPPORTED = f"Supported: {SUPPORTED_VIT}; {SUPPORTED_HIERARCHICAL}."


def sparsify(model: nn.Module, keep_rate: float = 0.7, prune_layers=None, **options) -> nn.Module:
    """Add dynamic spatial sparsification to an existing timm model in place and return it.

    Plain ViTs get DynamicViT token pruning (``prune_layers`` default: blocks depth/4, depth/2,
    3·depth/4); ConvNeXt/Swin get asymmetric computation in their third stage
    (``prune_layers`` stage-local, ``keep_ratios`` default ``[rho, rho-0.2, rho-0.4]``, see
    :mod:`dynamicvit.hierarchical`). Weights are kept; ``score_predictor`` holds the new predictors.
    """
    if is_hierarchical(model):
        return sparsify_hierarchical(model, keep_rate=keep_rate, prune_layers=prune_layers, **options)
    if options:
        raise TypeError(f"options {sorted(options)} apply to ConvNeXt/Swin models only")
    return sparsify_vit(model, keep_rate=keep_rate, prune_layers=prune_layers)


def create_model(
    name: str,
    keep_rate: float = 0.7,
    prune_layers=None,
    pretrained: bool = False,
    checkpoint_path: str | None = None,
    keep_ratios=None,
    **timm_kwargs,
) -> nn.Module:
    """``timm.create_model(name, pretrained, **timm_kwargs)`` made sparse.

    ``checkpoint_path`` loads either a sparse checkpoint (backbone + predictors, strict) or a
    dense backbone checkpoint (predictors keep their fresh initialisation).
    """
    options = {} if keep_ratios is None else {"keep_ratios": keep_ratios}
    model = build_timm_model(name, pretrained, **timm_kwargs)
    model = sparsify(model, keep_rate=keep_rate, prune_layers=prune_layers, **options)
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
    except TypeError as err:
        if "img_size" in timm_kwargs and "img_size" in str(err):  # e.g. ConvNeXt: any input size, no img_size
            return build_timm_model(name, pretrained, **{k: v for k, v in timm_kwargs.items() if k != "img_size"})
        raise
    except RuntimeError as err:
        if "Unknown model" in str(err):
            raise ValueError(f"unknown model {name!r}. {SUPPORTED}") from None
        raise
