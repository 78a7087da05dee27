"""Build sparse models by name, like ``timm.create_model``, or sparsify one you already have.

The families come from :mod:`dynamicvit.models.registry` (a family module registers itself).
"""

from __future__ import annotations

import copy

from torch import nn

from dynamicvit.models.registry import FAMILIES, build_timm_model, family_of
from dynamicvit.weights import zoo
from dynamicvit.weights.checkpoint import load_checkpoint
from dynamicvit.weights.download import download

__all__ = ["create_model", "create_pair", "sparsify"]


def sparsify(model: nn.Module, keep_rate: float = 0.7, prune_layers=None, **options) -> nn.Module:
    """Add dynamic spatial sparsification to an existing timm model in place and return it.

    Plain ViTs get DynamicViT token pruning (``prune_layers`` default: blocks depth/4, depth/2,
    3·depth/4); ConvNeXt/Swin get asymmetric computation in their third stage
    (``prune_layers`` stage-local, ``keep_ratios`` default ``[rho, rho-0.2, rho-0.4]``, see
    :mod:`dynamicvit.models.hierarchical`). Weights are kept; ``score_predictor`` holds the new predictors.
    """
    family = family_of(model)
    unknown = sorted(set(options) - set(family.options))
    if unknown:
        takers = [f.name for f in FAMILIES if set(unknown) <= set(f.options)]
        where = f"{' and '.join(takers)} models only" if takers else "no model family"
        raise TypeError(f"options {unknown} apply to {where}")
    return family.sparsify(model, keep_rate=keep_rate, prune_layers=prune_layers, **options)


def create_model(
    name: str,
    keep_rate: float | None = None,
    prune_layers=None,
    pretrained: bool = False,
    checkpoint_path: str | None = None,
    keep_ratios=None,
    **timm_kwargs,
) -> nn.Module:
    """``timm.create_model(name, pretrained, **timm_kwargs)`` made sparse (``keep_rate`` default 0.7),
    or a released model of :mod:`dynamicvit.weights.zoo` by its name (its keep rate; ``pretrained`` downloads
    the release's file).

    ``checkpoint_path`` loads a sparse checkpoint (backbone + predictors, strict; the release's layouts
    converted) or a dense backbone checkpoint (predictors keep their fresh initialisation).
    """
    arch, keep_rate, options = zoo.resolve(name, keep_rate)
    if keep_ratios is not None:
        options = {"keep_ratios": keep_ratios}
    if name in zoo.ZOO and pretrained and checkpoint_path is None:
        checkpoint_path, pretrained = download(name), False
    model = build_timm_model(arch, pretrained, **timm_kwargs)
    model = sparsify(model, keep_rate=keep_rate, prune_layers=prune_layers, **options)
    if checkpoint_path is not None:
        load_checkpoint(model, checkpoint_path)
    return model


def create_pair(
    name: str, keep_rate: float | None = None, prune_layers=None, **timm_kwargs
) -> tuple[nn.Module, nn.Module]:
    """A dense timm model and its sparsified copy with identical backbone weights, both in eval mode
    (``name`` may be a zoo name: its backbone and budget)."""
    arch, keep_rate, options = zoo.resolve(name, keep_rate)
    dense = build_timm_model(arch, **timm_kwargs).eval()
    sparse = sparsify(copy.deepcopy(dense), keep_rate=keep_rate, prune_layers=prune_layers, **options)
    return dense, sparse.eval()
