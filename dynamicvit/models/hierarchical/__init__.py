"""Hierarchical backbones (ConvNeXt, Swin) with asymmetric computation: the machinery
(:mod:`~dynamicvit.models.hierarchical.asymmetric`), one module per family's blocks, and the family entry
(:mod:`~dynamicvit.models.hierarchical.family`)."""

from dynamicvit.models.hierarchical.family import (
    BLOCK_KINDS,
    DEFAULT_PRUNE_LAYERS,
    FAMILY,
    SUPPORTED_HIERARCHICAL,
    FastPath,
    is_hierarchical,
    sparsify_hierarchical,
)

__all__ = [
    "DEFAULT_PRUNE_LAYERS",
    "BLOCK_KINDS",
    "FAMILY",
    "SUPPORTED_HIERARCHICAL",
    "FastPath",
    "is_hierarchical",
    "sparsify_hierarchical",
]
