"""``topk``: keep the patches the class token attends to most, drop the rest (no fusion).

The "Top-K" baseline of Haurum et al. (ICCVW 2023, arXiv 2308.04657), found surprisingly strong
across token-reduction methods. It is exactly EViT without its fused token (:mod:`.evit`,
``fuse=False``): the same attention, the same schedule, registered under its own name so that a
comparison lists it.
"""

from __future__ import annotations

from torch import nn

from dynamicvit.core.interfaces import Method
from dynamicvit.methods.common import reduce_vit
from dynamicvit.methods.evit import EViTMixin
from dynamicvit.methods.registry import register_method

__all__ = ["TopK", "TopKMixin"]


class TopKMixin(EViTMixin):
    method = "topk"
    fuse = False


@register_method
class TopK(Method):
    name = "topk"
    label = "Top-K (CLS attention)"
    summary = "keeps what the class token attends to, drops the rest (EViT without fusion)"
    paper = "2308.04657"

    @classmethod
    def apply(cls, model: nn.Module, keep_rate: float = 0.7, prune_layers=None, **_) -> nn.Module:
        return reduce_vit(model, TopKMixin, keep_rate, prune_layers)
