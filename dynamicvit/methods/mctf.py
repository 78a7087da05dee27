"""``mctf``: Multi-criteria token fusion (Lee et al., CVPR 2024, arXiv 2403.10030), as the authors' code runs it.

From the second block on, every block fuses ``r`` tokens at its start with *one-step-ahead* attention:
the block's attention A (proportional, ``+ log size``) is computed from the queries and keys of the
tokens it receives; it chooses and weights the fusion; the tokens are fused; A is fused too – the
columns of merged keys summed, the rows of merged queries averaged with the fusion weights – and
applied to the values of the fused tokens. Only the fused tokens' values are computed, so the
block costs less than the block it replaces. Pairs are scored on the even/odd split of the patches
by three criteria multiplied together:

* similarity ``((cos + 1) / 2) ** (1/τ_sim)`` of the block's input tokens;
* informativeness ``(ĩ_a ĩ_b) ** (1/τ_info)``, ĩ = 1 / attention received, max-normalised
  (tokens few others attend to fuse first);
* size ``(s̃_a s̃_b) ** (1/τ_size)``, s̃ = 1 / size (small tokens fuse first);

with τ = (1, 20, 40). Fusion is bidirectional: ``r // 2`` tokens of A go into B, then the rest of
``r`` from B into the A tokens left. Fused tokens are averaged with weights attention received ×
size (computed without gradient); sizes add. The class token never fuses, and no block reduces below
:data:`MIN_TOKENS` tokens. A fractional ``r`` is spread over the blocks.

Fine-tuned with MCTF (``consistency``), the authors' token-reduction consistency joins the objective:
a second forward of the same network at a random ``r`` in ``[0, CONSISTENCY_R)`` adds its own
cross-entropy and ``3 ·`` the squared distance between the two class tokens (the second detached),
over the images whose true class the first forward gives a probability above 0.4.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dynamicvit.core.merging import Merge, attend, fuse_tokens, proportional_probs, rank_of, slot_sums
from dynamicvit.core.tokens import attention_output, residual_mlp
from dynamicvit.methods.common import InBlockMixin, MergePerBlock, spread
from dynamicvit.methods.registry import register_method

__all__ = ["MCTF", "MCTFMixin", "MIN_TOKENS", "TAUS", "fuse_attention", "mctf_merge_plan", "pair_scores"]

TAUS = (1.0, 20.0, 40.0)  # τ_sim, τ_info, τ_size of the paper
MIN_TOKENS = 10  # the authors' code stops fusing where fewer tokens (class token included) would remain
CONSISTENCY_R, CONSISTENCY_WEIGHT, CONFIDENCE = 8, 3.0, 0.4  # the authors' consistency training


def pair_scores(
    metric: torch.Tensor, received: torch.Tensor, size: torch.Tensor, taus: tuple[float, float, float] = TAUS
) -> torch.Tensor:
    """MCTF's multi-criteria score of every (A, B) pair (B, ⌈n/2⌉, ⌊n/2⌋) of ``n`` patches.

    Args:
        metric: the tokens to compare (the block's input) (B, n, d).
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


def fuse_attention(probs: torch.Tensor, plan: Merge, weight: torch.Tensor) -> torch.Tensor:
    """Attention probabilities (B, H, N, N) over the fused tokens (B, H, N', N'): the columns of merged keys
    summed, the rows of merged queries averaged with ``weight`` (B, N) (the fusion weights)."""
    b, h, n, _ = probs.shape
    by_key = slot_sums(probs.permute(0, 3, 1, 2).reshape(b, n, h * n), plan)  # (B, N', H·N)
    m = by_key.shape[1]
    by_query = by_key.reshape(b, m, h, n).permute(0, 3, 2, 1).reshape(b, n, h * m)  # (B, N, H·N')
    w = weight[..., None].to(probs.dtype)
    rows = slot_sums(by_query * w, plan) / slot_sums(w, plan)
    return rows.reshape(b, m, h, m).permute(0, 2, 1, 3)


def _projection(attn: nn.Module, h: torch.Tensor, part: slice) -> torch.Tensor:
    """Part of timm's fused ``qkv`` projection of ``h`` (B, N, C): its rows ``part`` of the weight."""
    bias = attn.qkv.bias[part] if attn.qkv.bias is not None else None
    return F.linear(h, attn.qkv.weight[part], bias)


class MCTFMixin(InBlockMixin):
    method = "mctf"
    mctf_r: float
    consistency: bool = False

    def merge_counts(self, num_patches: int | None = None) -> list[int]:
        """Tokens fused in each block: none in the first, ``r`` spread over the others, at most half of the
        patches and never below :data:`MIN_TOKENS` tokens."""
        n, prefix, fused = num_patches or self.num_patches, self.num_prefix_tokens, [0]
        for r in spread(self.mctf_r, len(self.blocks) - 1):
            fused.append(max(0, min(r, n + prefix - MIN_TOKENS, n // 2)))
            n -= fused[-1]
        return fused

    def token_counts(self, num_patches: int | None = None) -> list[int]:
        """Tokens left after each block."""
        n, counts = num_patches or self.num_patches, []
        for r in self.merge_counts(n):
            n -= r
            counts.append(n)
        return counts

    def forward_blocks(self, x, decisions, grid):
        """Tokens are mixtures of patches: no kept indices to report."""
        size = x.new_ones(x.shape[0], x.shape[1], 1, dtype=torch.float32)
        for blk, r in zip(self.blocks, self.merge_counts(x.shape[1] - self.num_prefix_tokens), strict=True):
            if r:
                x, size = self._fused_attention(blk, x, size, r)
            else:
                x = attend(blk, x, size)[0]
            x = residual_mlp(blk, x)
        return x, []

    def _fused_attention(self, blk: nn.Module, x: torch.Tensor, size: torch.Tensor, r: int):
        """The attention residual of ``blk``, one step ahead: attention on ``x``, ``r`` tokens fused, the
        fused attention applied to the fused tokens' values."""
        prefix, attn = self.num_prefix_tokens, blk.attn
        b, n, _ = x.shape
        dim = attn.num_heads * attn.head_dim
        qk = _projection(attn, blk.norm1(x), slice(0, 2 * dim))
        q, k = qk.reshape(b, n, 2, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        probs = proportional_probs(attn, attn.q_norm(q), attn.k_norm(k), size)
        with torch.no_grad():
            received = probs.mean(dim=(1, 2))  # (B, N): attention each token receives
            scores = pair_scores(x[:, prefix:], received[:, prefix:], size[:, prefix:, 0])
            plan = mctf_merge_plan(scores, r).shifted(prefix)
            weight = received * size[..., 0]
        x, fused_size = fuse_tokens(x, size, plan, weight=received)
        probs = fuse_attention(probs, plan, weight)
        h = blk.norm1(x)
        v = _projection(attn, h, slice(2 * dim, 3 * dim)).reshape(b, n - r, attn.num_heads, -1).transpose(1, 2)
        heads = F.dropout(probs, attn.attn_drop.p, self.training).to(v.dtype) @ v
        return x + blk.drop_path1(blk.ls1(attention_output(attn, h, heads))), fused_size

    def method_loss(self, inputs: torch.Tensor, output, targets) -> dict[str, torch.Tensor]:
        """The authors' token-reduction consistency (with ``consistency``): a second forward at a random
        smaller ``r``, its cross-entropy and the class tokens' squared distance on confident images."""
        if not self.consistency:
            return {}
        logits, _, features = output
        r = self.mctf_r
        self.mctf_r = float(torch.randint(0, CONSISTENCY_R, ()).item())
        try:
            second = self.forward_with_decisions(inputs)
        finally:
            self.mctf_r = r
        soft = targets if targets.dim() == 2 else F.one_hot(targets, logits.shape[-1]).to(logits.dtype)
        confident = ((logits.detach().float().softmax(-1) * soft).sum(-1) > CONFIDENCE).float()
        gap = (second.features[:, 0].detach() - features[:, 0]).float().pow(2).mean(dim=-1)
        return {
            "second_ce": F.cross_entropy(second.logits.float(), soft.float()),
            "consistency": CONSISTENCY_WEIGHT * (gap * confident).sum() / confident.sum().clamp_min(1),
        }


@register_method
class MCTF(MergePerBlock):
    name = "mctf"
    label = "MCTF (multi-criteria fusion)"
    summary = "multi-criteria fusion (similarity, informativeness, size), bidirectional"
    paper = "2403.10030"
    knob = "mctf_r"
    merges = "fused"
    mixin = MCTFMixin
    apply_options = ("consistency",)

    @classmethod
    def regime_options(cls, fine_tuned: bool) -> dict:
        """The consistency loss for a network fine-tuned with MCTF (the authors' training)."""
        return {"consistency": fine_tuned}
