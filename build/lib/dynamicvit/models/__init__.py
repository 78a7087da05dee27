"""Backbone families: one module each (ViT, EVA, BEiT, ConvNeXt/Swin, LV-ViT, demo ViTs, Hugging Face),
and the family registry with the model factory (:mod:`dynamicvit.models.factory`)."""

from dynamicvit.models import demo_vits, lvvit  # noqa: F401  (register their architectures with timm)
from dynamicvit.models.factory import (
    FAMILIES,
    SUPPORTED,
    build_timm_model,
    create_model,
    create_pair,
    family_of,
    sparsify,
)

__all__ = ["FAMILIES", "SUPPORTED", "build_timm_model", "create_model", "create_pair", "family_of", "sparsify"]
