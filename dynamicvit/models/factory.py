"""Build sparse models by name, like ``timm.create_model``, or sparsify one you already have.

``FAMILIES`` is the backbone registry: a family is added by its own module (which defines its
:class:`dynamicvit.core.interfaces.Family` entry) plus one line here.
"""

from __future__ import annotations

import copy

import timm
from torch import nn

from dynamicvit.core.interfaces import Family
from dynamicvit.models import beit, eva, hf, hierarchical, vit
from dynamicvit.weights import zoo
from dynamicvit.weights.checkpoint import load_checkpoint

__all__ = ["FAMILIES", "SUPPORTED", "build_timm_model", "create_model", "create_pair", "family_of", "sparsify"]

FAMILIES: tuple[Family, ...] = (vit.FAMILY, eva.FAMILY, beit.FAMILY, hf.FAMILY, hierarchical.FAMILY)

SUPPORTED = "Supported: " + "; ".join(f.supported for f in FAMILIES) + "."


def family_of(model: nn.Module) -> Family:
    """The registered family of ``model`` (dense or sparsified), or a ``TypeError`` listing what is supported."""
    for family in FAMILIES:
        if family.recognises(model):
            return family
    raise TypeError(f"{type(model).__name__} is not supported; supported: " + "; ".join(f.supported for f in FAMILIES))


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
        checkpoint_path, pretrained = zoo.download(name), False
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
