"""``evit``: EViT (Liang et al., "Not All Patches are What You Need", ICLR 2022, arXiv 2202.07800).

In the block of each stage, after attention, keep the ``k_s`` tokens the class token attends to
most (mean over heads) and, with ``fuse``, add the rest weighted by that attention into one extra
token; the MLP runs on what is kept. As in the authors' code, a fused token from an earlier stage
competes in the next top-k like any other token: kept if attended to, else fused again. Tokens are
then no longer a subset of the patches, so with ``fuse`` no kept indices are reported. Follows
DynamicViT's keep schedule.
"""

from __future__ import annotations

import torch
from torch import nn

from dynamicvit.core.interfaces import Method
from dynamicvit.core.tokens import gather_tokens, iter_stages, residual_attention, residual_mlp
from dynamicvit.methods.common import BaselineMixin, reduce_vit
from dynamicvit.methods.registry import register_method

__all__ = ["EViT", "EViTMixin"]


class EViTMixin(BaselineMixin):
    method = "evit"
    fuse: bool

    def token_counts(self, num_patches: int | None = None) -> list[int]:
        return [k + int(self.fuse) for k in self.keep_counts(num_patches)]

    def forward_blocks(self, x, decisions, grid):
        prefix = self.num_prefix_tokens
        b, n = x.shape[0], x.shape[1] - prefix
        counts = self.keep_counts(n)
        index = torch.arange(n, device=x.device).expand(b, n)
        kept = []
        for s, blk in iter_stages(self.blocks, self._prune_layers):
            if s is None:
                x = blk(x)
                continue
            x, keep = self._evit_block(blk, x, counts[s])
            if not self.fuse:  # without fusion the tokens stay a subset of the patches
                index = index.gather(1, keep)
                kept.append(index)
        return x, kept

    def _evit_block(self, blk: nn.Module, x: torch.Tensor, k: int):
        """One EViT block: attention on all tokens, keep the class token's top-k of the tokens after the prefix
        (an earlier fused token among them), fuse the rest into one, MLP."""
        prefix, attn_mod, seen = self.num_prefix_tokens, blk.attn, {}

        def heads(q: torch.Tensor, key: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            seen["attn"] = attn = ((q * attn_mod.scale) @ key.transpose(-2, -1)).float().softmax(dim=-1)
            return attn_mod.attn_drop(attn).to(v.dtype) @ v

        x = residual_attention(blk, x, heads)
        cls_attn = seen["attn"][:, :, 0, prefix:].mean(dim=1)  # (B, T) the class token's attention, mean over heads
        order = cls_attn.argsort(dim=1, descending=True)
        keep, drop = order[:, :k], order[:, k:]
        tokens = x[:, prefix:]
        parts = [x[:, :prefix], gather_tokens(tokens, keep)]
        if self.fuse:
            weights = cls_attn.gather(1, drop).unsqueeze(-1).to(x.dtype)
            parts.append((gather_tokens(tokens, drop) * weights).sum(dim=1, keepdim=True))
        return residual_mlp(blk, torch.cat(parts, dim=1)), keep


@register_method
class EViT(Method):
    name = "evit"
    label = "EViT (CLS attention + fuse)"
    summary = "keeps what the class token attends to, fuses the rest into one token"
    paper = "2202.07800"
    keeps_subset = False  # its fused token is a mixture of patches

    @classmethod
    def apply(cls, model: nn.Module, keep_rate: float = 0.7, prune_layers=None, fuse: bool = True, **_) -> nn.Module:
        return reduce_vit(model, EViTMixin, keep_rate, prune_layers, fuse=bool(fuse))
