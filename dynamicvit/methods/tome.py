"""``tome``: Token Merging (Bolya et al., ICLR 2023, arXiv 2210.09461).

In every block, after attention, merge ``r`` tokens by bipartite soft matching on the keys (mean
over heads, cosine similarity) and average merged tokens by size. As in the authors' code the
tokens left unmerged keep their order of position (the next block's alternating split depends on
it), and proportional attention (``+ log size`` on the keys) is on for a network used as it was
trained and off for one fine-tuned with ToMe (the authors' ``prop_attn`` advice). Its knob is ``r``,
not a keep rate; a fractional ``r`` is spread over the blocks.
"""

from __future__ import annotations

import torch

from dynamicvit.core.merging import attend
from dynamicvit.core.tokens import residual_mlp
from dynamicvit.methods.common import InBlockMixin, MergePerBlock, spread
from dynamicvit.methods.registry import register_method

__all__ = ["ToMe", "ToMeMixin", "bipartite_merge"]


def bipartite_merge(
    x: torch.Tensor, size: torch.Tensor, metric: torch.Tensor, r: int, prefix: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """ToMe's bipartite soft matching: merge ``r`` of the patch tokens into their best partners.

    Alternate patch tokens form sets A and B; each A token's most similar B token is its
    edge; the ``r`` strongest edges merge (size-weighted mean). The A tokens left come first, in
    order of position, then B. Prefix tokens are untouched.
    """
    c = x.shape[-1]
    keys = metric[:, prefix:]
    keys = keys / keys.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    scores = keys[:, ::2] @ keys[:, 1::2].transpose(1, 2)
    best, partner = scores.max(dim=-1)
    edges = best.argsort(dim=-1, descending=True)[..., None]
    unmerged, src = edges[:, r:].sort(dim=1).values, edges[:, :r]
    dst = partner[..., None].gather(1, src)

    weighted, sizes = x[:, prefix:] * size[:, prefix:], size[:, prefix:]
    xa, xb = weighted[:, ::2], weighted[:, 1::2]
    sa, sb = sizes[:, ::2], sizes[:, 1::2]
    xb = xb.scatter_reduce(1, dst.expand(-1, -1, c), xa.gather(1, src.expand(-1, -1, c)), reduce="sum")
    sb = sb.scatter_reduce(1, dst, sa.gather(1, src), reduce="sum")
    merged_size = torch.cat([sa.gather(1, unmerged), sb], dim=1)
    merged = torch.cat([xa.gather(1, unmerged.expand(-1, -1, c)), xb], dim=1) / merged_size
    return torch.cat([x[:, :prefix], merged.to(x.dtype)], dim=1), torch.cat([size[:, :prefix], merged_size], dim=1)


class ToMeMixin(InBlockMixin):
    method = "tome"
    tome_r: float
    prop_attn: bool = True

    def merge_counts(self, num_patches: int | None = None) -> list[int]:
        """Tokens merged in each block (``r`` spread over the blocks, capped at half of what is left)."""
        n, merged = num_patches or self.num_patches, []
        for r in spread(self.tome_r, len(self.blocks)):
            merged.append(min(r, n // 2))
            n -= merged[-1]
        return merged

    def token_counts(self, num_patches: int | None = None) -> list[int]:
        """Tokens left after each block."""
        n, counts = num_patches or self.num_patches, []
        for r in self.merge_counts(n):
            n -= r
            counts.append(n)
        return counts

    def forward_blocks(self, x, decisions, grid):
        """Tokens are mixtures of patches: no kept indices to report."""
        prefix = self.num_prefix_tokens
        size = x.new_ones(x.shape[0], x.shape[1], 1, dtype=torch.float32)
        for blk, r in zip(self.blocks, self.merge_counts(x.shape[1] - prefix), strict=True):
            x, _, keys, _ = attend(blk, x, size if self.prop_attn else torch.ones_like(size))
            if r > 0:
                x, size = bipartite_merge(x, size, keys.mean(dim=1), r, prefix)
            x = residual_mlp(blk, x)
        return x, []


@register_method
class ToMe(MergePerBlock):
    name = "tome"
    label = "ToMe (merging)"
    summary = "bipartite merging of r tokens in every block"
    paper = "2210.09461"
    knob = "tome_r"
    mixin = ToMeMixin
    apply_options = ("prop_attn",)

    @classmethod
    def regime_options(cls, fine_tuned: bool) -> dict:
        """Proportional attention only for a network used as it was trained (the authors' advice)."""
        return {"prop_attn": not fine_tuned}
