"""Backbone families: one module each (ViT, EVA, BEiT, ConvNeXt/Swin, LV-ViT, demo ViTs, Hugging Face),
each registering itself in :mod:`dynamicvit.models.registry`, and the model factory
(:mod:`dynamicvit.models.factory`). Importing this package registers every family."""

# importing registers each family; family_of tries them in this order
# isort: off
from dynamicvit.models import vit  # noqa: F401
from dynamicvit.models import eva  # noqa: F401
from dynamicvit.models import beit  # noqa: F401
from dynamicvit.models import hf  # noqa: F401
from dynamicvit.models import hierarchical  # noqa: F401

# isort: on
from dynamicvit.models.factory import create_model, sparsify
from dynamicvit.models.registry import FAMILIES, build_timm_model, family_of, find_family, register_family, supported

__all__ = [
    "FAMILIES",
    "build_timm_model",
    "create_model",
    "family_of",
    "find_family",
    "register_family",
    "sparsify",
    "supported",
]
