"""``mctf``: Multi-criteria token fusion (Lee et al., CVPR 2024, arXiv 2403.10030).

From the second block on, every block fuses ``r`` tokens at its start with *one-step-ahead*
attention: the block's attention is computed on the tokens it receives, chooses and weights the
fusion, and the fused tokens leave the attention with the weighted average of their queries'
outputs. (The paper fuses the attention matrix – rows averaged, columns of merged keys summed –
and applies it to averaged values; applying each query's attention to the unfused values and
averaging the outputs keeps the keys exact and costs no extra matmul.)
Pairs are scored on the even/odd split of the patches by three criteria multiplied together:

* similarity ``((cos + 1) / 2) ** (1/τ_sim)`` of the head-averaged keys;
* informativeness ``(ĩ_a ĩ_b) ** (1/τ_info)``, ĩ = 1 / attention received, max-normalised
  (tokens few others attend to fuse first);
* size ``(s̃_a s̃_b) ** (1/τ_size)``, s̃ = 1 / size (small tokens fuse first);

with τ = (1, 20, 40). Fusion is bidirectional: ``r // 2`` tokens of A go into B, then the rest
of ``r`` from B into the A tokens left. Fused tokens are averaged with weights attention received
× size; sizes add; attention is proportional. The class token never fuses. The paper's
consistency loss (a second forward at another ``r``) is not part of this module: fine-tuning uses
the harness's shared recipe.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dynamicvit.core.merging import Merge, attend, fuse_tokens, proportional_probs, rank_of
from dynamicvit.core.tokens import attention_output, attention_qkv, residual_mlp
from dynamicvit.methods.common import InBlockMixin, MergePerBlock
from dynamicvit.methods.registry import register_method

__all__ = ["MCTF", "MCTFMixin", "TAUS", "mctf_merge_plan", "pair_scores"]

TAUS = (1.0, 20.0, 40.0)  # τ_sim, τ_info, τ_size of the paper


def pair_scores(
    metric: torch.Tensor, received: torch.Tensor, size: torch.Tensor, taus: tuple[float, float, float] = TAUS
) -> torch.Tensor:
    """MCTF's multi-criteria score of every (A, B) pair (B, ⌈n/2⌉, ⌊n/2⌋) of ``n`` patches.

    Args:
        metric: head-averaged keys (B, n, d).
        received: attention each token receives, averaged over heads and queries (B, n).
        size: patches each token stands for (B, n).
        taus: temperatures of similarity, informativeness and size.
    """
    keys = F.normalize(metric.float(), dim=-1)
    sim = ((keys[:, ::2] @ keys[:, 1::2].transpose(1, 2) + 1) / 2).clamp_min(0) ** (1 / taus[0])
    info = 1 / received.float().clamp_min(1e-12)
    info = info / info.max(dim=1, keepdim=True).values
    small = 1 / size.float()
    pair = lambda t: t[:, ::2, None] * t[:, None, 1::2]  # noqa: E731
    return sim * pair(info) ** (1 / taus[1]) * pair(small) ** (1 / taus[2])


def mctf_merge_plan(scores: torch.Tensor, r: int) -> Merge:
    """Bidirectional fusion of ``r`` patches as a :class:`Merge` into ``n − r`` slots.

    ``r // 2`` A tokens (strongest best pairs) go to their best B token; then the ``r − r // 2`` B tokens
    with the strongest pairs among the A tokens left go to their best such A token (taking along
    what they received).

    Args:
        scores: pair scores (B, nA, nB) from :func:`pair_scores`.
        r: tokens fused away, at most ``n // 2``.

    Returns:
        The plan: A tokens left open the first slots, B tokens left the rest.
    """
    na, r1, r2 = scores.shape[1], r // 2, r - r // 2
    best_b, to_b = scores.max(dim=-1)
    order_a = best_b.argsort(dim=-1, descending=True)
    left_a = rank_of(order_a) >= r1
    best_a, to_a = scores.masked_fill(~left_a[:, :, None], -1.0).max(dim=1)
    order_b = best_a.argsort(dim=-1, descending=True)
    slot_a = rank_of(order_a) - r1
    slot_b = torch.where(rank_of(order_b) < r2, slot_a.gather(1, to_a), na - r1 + rank_of(order_b) - r2)
    anchors = torch.cat([2 * order_a[:, r1:], 2 * order_b[:, r2:] + 1], dim=1)
    sources = torch.cat([2 * order_a[:, :r1], 2 * order_b[:, :r2] + 1], dim=1)
    targets_a = slot_b.gather(1, to_b.gather(1, order_a[:, :r1]))  # via their B partner, wherever it went
    targets = torch.cat([targets_a, slot_a.gather(1, to_a.gather(1, order_b[:, :r2]))], dim=1)
    return Merge(anchors, sources, targets)


class MCTFMixin(InBlockMixin):
    method = "mctf"
    mctf_r: int

    def token_counts(self, num_patches: int | None = None) -> list[int]:
        """Tokens left after each block (none fused in the first; ``r`` capped at half of what is left)."""
        n, counts = num_patches or self.num_patches, []
        for i in range(len(self.blocks)):
            n -= min(self.mctf_r, n // 2) if i else 0
            counts.append(n)
        return counts

    def forward_blocks(self, x, decisions, grid):
        """Tokens are mixtures of patches: no kept indices to report."""
        size = x.new_ones(x.shape[0], x.shape[1], 1, dtype=torch.float32)
        for i, blk in enumerate(self.blocks):
            r = min(self.mctf_r, (x.shape[1] - self.num_prefix_tokens) // 2) if i else 0
            if r:
                x, size = self._fused_attention(blk, x, size, r)
            else:
                x = attend(blk, x, size)[0]
            x = residual_mlp(blk, x)
        return x, []

    def _fused_attention(self, blk: nn.Module, x: torch.Tensor, size: torch.Tensor, r: int):
        """The attention residual of ``blk`` on ``x``, fused by ``r`` tokens with the block's own attention."""
        prefix, attn = self.num_prefix_tokens, blk.attn
        h = blk.norm1(x)
        q, k, v = attention_qkv(attn, h)
        probs = proportional_probs(attn, q, k, size)
        received = probs.mean(dim=(1, 2))  # (B, N): attention each token receives
        scores = pair_scores(k.mean(dim=1)[:, prefix:], received[:, prefix:], size[:, prefix:, 0])
        plan = mctf_merge_plan(scores, r).shifted(prefix)
        heads = F.dropout(probs, attn.attn_drop.p, self.training).to(v.dtype) @ v  # (B, H, N, d)
        b, nh, n, d = heads.shape
        flat = heads.transpose(1, 2).reshape(b, n, nh * d)
        stacked = torch.cat([x, h, flat], dim=-1)  # one fusion for the tokens, their norm and the heads
        fused, fused_size = fuse_tokens(stacked, size, plan, weight=received)
        x, h, flat = fused.split([x.shape[-1], h.shape[-1], nh * d], dim=-1)
        heads = flat.reshape(b, -1, nh, d).transpose(1, 2)
        return x + blk.drop_path1(blk.ls1(attention_output(attn, h, heads))), fused_size


@register_method
class MCTF(MergePerBlock):
    name = "mctf"
    label = "MCTF (multi-criteria fusion)"
    knob = "mctf_r"
    merges = "fused"
    mixin = MCTFMixin
