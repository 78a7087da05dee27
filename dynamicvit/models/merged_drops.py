"""A home for the dropped tokens: DynamicViT with ``merge_dropped`` merges every token a stage drops into
the kept token most similar to it instead of discarding it.

Each dropped token joins the kept token whose hidden state is most cosine-similar (size-weighted average,
sizes add), and later blocks use proportional attention (``+ log size`` on the keys, ToMe's rule) so a
merged token keeps the weight of what it holds. Inference stays a similarity matmul plus one row
``index_add_`` of every patch into its slot (a one-hot matmul while exporting to ONNX). In
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
from dynamicvit.core.merging import soft_merge
from dynamicvit.core.predictor import decide
from dynamicvit.core.tokens import (
    flat_rows,
    forced_at,
    gather_tokens,
    iter_stages,
    patch_tokens,
    residual_attention,
    residual_mlp,
)

__all__ = ["MergedDropsMixin", "merge_into_kept", "merges_drops"]


def merge_into_kept(
    patches: torch.Tensor, size: torch.Tensor | None, keep: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every patch summed into a slot of the kept positions ``keep`` (B, k): a kept patch into its own slot, a
    dropped one into the slot of the kept patch most cosine-similar to it (hidden states compared).

    One similarity matmul over all patches and one row ``index_add_`` of the size-weighted patches with
    their sizes (a one-hot matmul while exporting to ONNX): no list of dropped positions is built. The
    nearest kept token is the argmax of ``patch · kept / |kept|`` (a patch's own norm does not change which
    one), so only the k kept tokens are normalised.

    Args:
        patches: patch tokens (B, n, C).
        size: patches each token stands for (B, n, 1), float32; ``None`` for one each.
        keep: kept positions (B, k).

    Returns:
        ``(size-weighted mean of each slot (B, k, C), its summed size (B, k, 1))``.
    """
    b, n, c = patches.shape
    k = keep.shape[1]
    tokens = patches.detach().float()
    target = (tokens @ F.normalize(gather_tokens(tokens, keep), dim=-1).transpose(1, 2)).argmax(dim=-1)
    target = target.scatter(1, keep, torch.arange(k, device=keep.device).expand(b, k))  # kept: own slot
    if size is None:
        packed = F.pad(patches.float(), (0, 1), value=1.0)  # (B, n, C + 1): each token and its size
    else:
        packed = torch.cat([patches.float() * size, size], dim=-1)
    if torch.onnx.is_in_onnx_export():
        onehot = (target[:, None, :] == torch.arange(k, device=keep.device)[None, :, None]).float()
        sums = onehot @ packed
    else:
        sums = packed.new_zeros(b * k, c + 1).index_add_(0, flat_rows(target, k), packed.flatten(0, 1))
        sums = sums.view(b, k, c + 1)
    return (sums[..., :c] / sums[..., c:]).to(patches.dtype), sums[..., c:]


def _proportional_block(blk: nn.Module, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """timm ``Block.forward`` in eval mode with proportional attention: ``bias`` (B, 1, 1, N) is ``log size``
    of each key, computed once per stage rather than in every block."""
    scale = blk.attn.scale

    def heads(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=scale)

    return residual_mlp(blk, residual_attention(blk, x, heads))


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
                              budget=self.budget_at(s), rule=self.mask_rule, prior=prior,
                              explore=self.explore)  # fmt: skip
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
        size, bias, index, kept = None, None, None, []  # size: of the patch tokens (prefix tokens: one each)
        for s, blk in iter_stages(self.blocks, self._prune_layers):
            received = None
            if s is not None:
                # the attention prior's stage block needs the whole sequence's sizes; without it, none
                whole = None if size is None or not self.attention_prior else _with_prefix_sizes(size, prefix)
                x, received = self._stage_attention(blk, x, None, whole)
                patches = patch_tokens(x, prefix)
                prior = None if received is None else log_prior(received)
                keep = decide(self.score_predictor[s], patches, counts[s], False, index, forced_at(decisions, s), n,
                              prior=prior)  # fmt: skip
                merged, size = merge_into_kept(patches, size, keep)
                x = torch.cat([x[:, :prefix], merged], dim=1)
                bias = F.pad(size[..., 0].log(), (prefix, 0))[:, None, None, :]  # + log size on each key
                index = keep if index is None else index.gather(1, keep)
                kept.append(index)
            if received is not None:
                x = residual_mlp(blk, x)
            else:
                x = blk(x) if bias is None else _proportional_block(blk, x, bias)
        return x, kept


def _with_prefix_sizes(size: torch.Tensor, prefix: int) -> torch.Tensor:
    """Sizes of the whole sequence (B, prefix + n, 1) from those of its patch tokens: a prefix token is one."""
    return F.pad(size, (0, 0, prefix, 0), value=1.0)


def merges_drops(reducer: object) -> bool:
    """Whether a reducing module can merge its dropped tokens (``merge_dropped``): DynamicViT on ViTs."""
    return isinstance(reducer, MergedDropsMixin)
