"""A home for the dropped tokens: DynamicViT with ``merge_dropped`` merges every token a stage drops into
the kept token most similar to it instead of discarding it.

Each dropped token joins the kept token whose hidden state is most cosine-similar (size-weighted average,
sizes add), and later blocks use proportional attention (``+ log size`` on the keys, ToMe's rule) so a
merged token keeps the weight of what it holds. Inference stays a gather plus a small merge (a scatter-add
of the dropped tokens; a one-hot matmul while exporting to ONNX, see :mod:`dynamicvit.core.merging`). In
training nothing is removed: a
token the stage drops sends itself to its kept partner with the weight ``alive − kept`` of the straight-
through masks, so the merge's gradient reaches the predictors, and masked attention carries the sizes as
a bias. Only the fixed keep mode and blocks that are timm's own (plain ViTs) merge.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dynamicvit.core.attention import masked_attention
from dynamicvit.core.attention_prior import log_prior
from dynamicvit.core.merging import Merge, attend, fuse_tokens, soft_merge
from dynamicvit.core.predictor import decide
from dynamicvit.core.tokens import forced_at, iter_stages, patch_tokens, residual_attention, residual_mlp

__all__ = ["MergedDropsMixin", "dropped_merge_plan", "merges_drops"]


def dropped_merge_plan(patches: torch.Tensor, keep: torch.Tensor) -> Merge:
    """The kept positions ``keep`` (B, k) of ``patches`` (B, n, C) as anchors, every other position a source
    joining the kept token most cosine-similar to it."""
    b, n = patches.shape[:2]
    kept = torch.zeros(b, n, device=keep.device).scatter(1, keep, 1.0)
    rank = (1 - kept) * (2 * n) - torch.arange(n, device=keep.device)  # dropped first, by position (topk exports)
    dropped = rank.topk(n - keep.shape[1], dim=1).indices
    keys = F.normalize(patches.detach().float(), dim=-1)
    sim = keys.gather(1, dropped[..., None].expand(-1, -1, keys.shape[-1])) @ keys.gather(
        1, keep[..., None].expand(-1, -1, keys.shape[-1])
    ).transpose(1, 2)
    return Merge(keep, dropped, sim.argmax(dim=-1))


def _sized_masked_block(blk: nn.Module, x: torch.Tensor, policy: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """timm ``Block.forward`` under the train-mode ``policy`` with proportional attention (``log size`` bias)."""
    attn = blk.attn

    def heads(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        bias = size[..., 0].log()[:, None, None, :].to(q.dtype).expand(-1, q.shape[1], q.shape[2], -1)
        return masked_attention(q, k, v, policy, attn.scale, attn.attn_drop, bias)

    return residual_mlp(blk, residual_attention(blk, x, heads))


class MergedDropsMixin:
    """The merging forwards of :class:`~dynamicvit.models.vit.DynamicViTMixin` (``merge_dropped=True``)."""

    merge_dropped: bool = False

    def _forward_masked_merging(self, x: torch.Tensor, decisions):
        """Train mode: masks as the paper's, dropped tokens merged into kept ones."""
        prefix = self.num_prefix_tokens
        counts = self.keep_counts(x.shape[1] - prefix)
        size = x.new_ones(x.shape[0], x.shape[1], 1, dtype=torch.float32)
        alive, policy, masks = None, None, []
        for s, blk in iter_stages(self.blocks, self._prune_layers):
            received = None
            if s is not None:
                x, received = self._stage_attention(blk, x, policy, None if policy is None else size)
                patches = patch_tokens(x, prefix)
                prior = None if received is None else log_prior(received, alive)
                mask = decide(self.score_predictor[s], patches, counts[s], True, alive, forced_at(decisions, s),
                              budget=self.budget_at(s), rule=self.mask_rule, prior=prior)  # fmt: skip
                before = torch.ones_like(mask) if alive is None else alive
                # a token the stage drops sends ``alive − kept`` of itself to its kept partner
                x, size = soft_merge(x, size, (before.float() - mask.float()).clamp_min(0), mask.float(), prefix)
                alive = mask
                masks.append(mask)
                policy = torch.cat([mask.new_ones(mask.shape[0], prefix), mask], dim=1)
            if received is not None:
                x = residual_mlp(blk, x)
            else:
                x = blk(x) if policy is None else _sized_masked_block(blk, x, policy, size)
        return x, masks

    def _forward_pruned_merging(self, x: torch.Tensor, decisions):
        """Eval mode: each stage keeps its count and merges the rest into what it keeps."""
        prefix = self.num_prefix_tokens
        n = x.shape[1] - prefix
        counts = self.keep_counts(n)
        size, index, kept = None, None, []
        for s, blk in iter_stages(self.blocks, self._prune_layers):
            received = None
            if s is not None:
                x, received = self._stage_attention(blk, x, None, size)
                patches = patch_tokens(x, prefix)
                prior = None if received is None else log_prior(received)
                keep = decide(self.score_predictor[s], patches, counts[s], False, index, forced_at(decisions, s), n,
                              prior=prior)  # fmt: skip
                sizes = x.new_ones(x.shape[0], x.shape[1], 1, dtype=torch.float32) if size is None else size
                merged, merged_size = fuse_tokens(patches, sizes[:, prefix:], dropped_merge_plan(patches, keep))
                x = torch.cat([x[:, :prefix], merged], dim=1)
                size = torch.cat([sizes[:, :prefix], merged_size], dim=1)
                index = keep if index is None else index.gather(1, keep)
                kept.append(index)
            if received is not None:
                x = residual_mlp(blk, x)
            else:
                x = blk(x) if size is None else residual_mlp(blk, attend(blk, x, size)[0])
        return x, kept


def merges_drops(reducer: object) -> bool:
    """Whether a reducing module can merge its dropped tokens (``merge_dropped``): DynamicViT on ViTs."""
    return isinstance(reducer, MergedDropsMixin)
