"""``ppt``: Token Pruning *and* Pooling (Wu et al., arXiv 2310.01812), as the authors' code runs it.

In the block of each stage, after the attention residual and before the MLP, PPT removes ``r``
patches by one of two policies, chosen per image from the spread of the token importance scores
(class-token attention summed over heads × the value's norm, normalised to sum to one over the
current patches):

* scores spread out (their variance at least the threshold): **prune** the ``r`` least important;
* scores even (nothing stands out, e.g. early blocks): **pool** – ToMe's bipartite merging of ``r``
  tokens on the head-averaged keys, size-weighted, with proportional attention afterwards.

As in the authors' code the threshold is on the plain (unbiased) variance of the current patches'
scores, whatever their number: 7e-5 for a network used as trained, 6e-5 for one fine-tuned with PPT
(:data:`PPT_THRESHOLD`, :data:`PPT_FINETUNED_THRESHOLD`). ``r`` is the same at every reducing block
(the authors: 50 of DeiT-S's 196 patches at blocks 3, 6 and 9), capped at half the patches left: the
keep rate ρ sets it to ``(1 − ρ)`` of the input patches (a fraction spread over the stages). Both
policies are computed and one is selected per image with ``where``: the forward is exportable and an
image's result does not depend on its batch.
"""

from __future__ import annotations

import torch
from torch import nn

from dynamicvit.core.interfaces import Method
from dynamicvit.core.merging import attend, bipartite_merge_plan, fuse_tokens, slot_sums
from dynamicvit.core.tokens import gather_tokens, iter_stages, residual_mlp
from dynamicvit.methods.common import BaselineMixin, reduce_vit, spread
from dynamicvit.methods.registry import register_method

__all__ = ["PPT", "PPTMixin", "PPT_FINETUNED_THRESHOLD", "PPT_THRESHOLD", "importance_scores", "pools"]

PPT_THRESHOLD = 7e-5  # the authors' variance threshold off the shelf
PPT_FINETUNED_THRESHOLD = 6e-5  # and for fine-tuning with PPT


def importance_scores(probs: torch.Tensor, v: torch.Tensor, prefix: int) -> torch.Tensor:
    """PPT's token importance (B, n): class-token attention summed over heads × ‖v‖ (heads concatenated),
    normalised to sum to one over the patches."""
    vnorm = v.transpose(1, 2).flatten(2).float().norm(dim=-1)  # (B, N)
    scores = probs[:, :, 0, prefix:].sum(dim=1) * vnorm[:, prefix:]
    return scores / scores.sum(dim=1, keepdim=True).clamp_min(1e-12)


def pools(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Per image (B,): whether PPT pools (the unbiased variance of the normalised ``scores`` (B, n) is below
    ``threshold``) rather than prunes."""
    variance = scores.float().var(dim=1) if scores.shape[1] > 1 else scores.new_zeros(scores.shape[0])
    return variance < threshold


class PPTMixin(BaselineMixin):
    method = "ppt"
    ppt_threshold: float

    def keep_counts(self, num_patches: int | None = None) -> list[int]:
        """Patches kept after each stage: ``(1 − ρ)`` of the input patches removed at every stage, at most half
        of those left (a searched keep schedule, when set, instead)."""
        n = num_patches or self.num_patches
        if self._keep_schedule is not None:
            return super().keep_counts(n)
        counts = []
        for r in spread((1 - self.keep_rate) * n, len(self._prune_layers)):
            n -= min(r, n // 2)
            counts.append(n)
        return counts

    def forward_blocks(self, x, decisions, grid):
        """Tokens are mixtures of patches after pooling: no kept indices to report."""
        prefix = self.num_prefix_tokens
        counts = self.keep_counts(x.shape[1] - prefix)
        size = x.new_ones(x.shape[0], x.shape[1], 1, dtype=torch.float32)
        for s, blk in iter_stages(self.blocks, self._prune_layers):
            x, probs, k, v = attend(blk, x, size, probs=s is not None)
            if s is not None:
                x, size = self._reduce(x, size, importance_scores(probs, v, prefix), k, counts[s])
            x = residual_mlp(blk, x)
        return x, []

    def _reduce(self, x: torch.Tensor, size: torch.Tensor, scores: torch.Tensor, k: torch.Tensor, keep: int):
        """Both policies down to ``keep`` patches, one chosen per image."""
        prefix, n = self.num_prefix_tokens, x.shape[1] - self.num_prefix_tokens
        if keep >= n:
            return x, size
        top = scores.topk(keep, dim=1).indices
        pruned, pruned_size = gather_tokens(x[:, prefix:], top), gather_tokens(size[:, prefix:], top)
        plan = bipartite_merge_plan(k.mean(dim=1)[:, prefix:], min(n - keep, n // 2))
        pooled, pooled_size = fuse_tokens(x[:, prefix:], size[:, prefix:], plan)
        if pooled.shape[1] != keep:  # pooling merges at most half: prune the rest of the way by importance
            order = slot_sums(scores[..., None], plan)[..., 0].topk(keep, dim=1).indices
            pooled, pooled_size = gather_tokens(pooled, order), gather_tokens(pooled_size, order)
        pool = pools(scores, self.ppt_threshold)[:, None, None]
        x = torch.cat([x[:, :prefix], torch.where(pool, pooled, pruned)], dim=1)
        return x, torch.cat([size[:, :prefix], torch.where(pool, pooled_size, pruned_size)], dim=1)


@register_method
class PPT(Method):
    name = "ppt"
    label = "PPT (prune or pool)"
    summary = "per image: prune by importance, or pool (merge) when the scores are even"
    paper = "2310.01812"
    per_image = True

    @classmethod
    def apply(
        cls, model: nn.Module, keep_rate: float = 0.7, prune_layers=None, ppt_threshold: float = PPT_THRESHOLD, **_
    ) -> nn.Module:
        if not ppt_threshold >= 0:
            raise ValueError(f"PPT's threshold must be >= 0, got {ppt_threshold}")
        return reduce_vit(model, PPTMixin, keep_rate, prune_layers, ppt_threshold=float(ppt_threshold))

    @classmethod
    def regime_options(cls, fine_tuned: bool) -> dict:
        """The authors' threshold: 6e-5 for fine-tuning with PPT, 7e-5 off the shelf."""
        return {"ppt_threshold": PPT_FINETUNED_THRESHOLD if fine_tuned else PPT_THRESHOLD}
