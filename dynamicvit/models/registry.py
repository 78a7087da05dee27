"""The backbone family registry: each family module registers its
:class:`~dynamicvit.core.interfaces.Family` here when it is imported (as timm's ``register_model``),
so this module depends on no family and every layer above can read the registry. Building a dense timm model
by name lives here too: an unknown name is answered with the registered families."""

from __future__ import annotations

import timm
from torch import nn

from dynamicvit.core.interfaces import Family
from dynamicvit.core.registry import Registry

__all__ = [
    "FAMILIES",
    "build_timm_model",
    "family_of",
    "find_family",
    "keeps_maps",
    "register_family",
    "segments_tokens",
    "supported",
]

FAMILIES: Registry[Family] = Registry("model family")
"""Backbone families :func:`dynamicvit.sparsify` knows, each registered by its module in :mod:`dynamicvit.models`
when the package is imported: plain ViTs, EVA, BEiT, Hugging Face models, ConvNeXt and Swin."""


def register_family(family: Family) -> Family:
    """Add ``family`` to :data:`FAMILIES` (recognition tries families in registration order)."""
    return FAMILIES.register(family.name, family)


def supported() -> str:
    """One sentence listing what every registered family accepts, for error messages."""
    return f"Supported: {_listed()}."


def _listed() -> str:
    return "; ".join(f.supported for f in FAMILIES.values())


def find_family(model: nn.Module) -> Family | None:
    """The registered family of ``model`` (dense or sparsified), or ``None``."""
    return next((family for family in FAMILIES.values() if family.recognises(model)), None)


def family_of(model: nn.Module) -> Family:
    """The registered family of ``model`` (dense or sparsified), or a ``TypeError`` listing what is supported."""
    family = find_family(model)
    if family is None:
        raise TypeError(f"{type(model).__name__} is not supported; supported: {_listed()}")
    return family


def keeps_maps(model: nn.Module) -> bool:
    """Whether ``model``'s family keeps its feature maps when sparsified (what dense prediction heads read)."""
    family = find_family(model)
    return family is not None and family.keeps_maps


def segments_tokens(model: nn.Module) -> bool:
    """Whether a segmenter on ``model`` reads its tokens put back on the patch grid (a plain ViT's family)."""
    family = find_family(model)
    return family is not None and family.segments_tokens


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
            raise ValueError(f"unknown model {name!r}. {supported()}") from None
        raise
