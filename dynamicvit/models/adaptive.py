"""The adaptive keep mode of DynamicViT's eval forward: each image keeps the tokens its scores put above
the stage's threshold, and the batch runs packed (no padding computed, no image depends on another)."""

from __future__ import annotations

import torch

from dynamicvit.core.predictor import threshold_keep
from dynamicvit.core.tokens import PackedTokens, forced_keep, iter_stages, packed_block, per_image, pools_patches

__all__ = ["AdaptiveForwardMixin"]


class AdaptiveForwardMixin:
    """``_forward_adaptive`` for a DynamicViT model whose blocks are timm ``Block`` s (mixed in front of it)."""

    last_keep_scores: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _forward_adaptive(self, x, decisions):
        """Eval, adaptive keep mode: each image keeps its own tokens (:func:`threshold_keep`); from the first
        stage on the batch runs packed (:class:`PackedTokens`), so no padding is computed and an image's
        output does not depend on the other images. Returns padded tokens and, per stage, one index
        tensor per image. ``last_keep_scores`` holds each stage's (scores, image ids) of the tokens alive
        before it (for calibration)."""
        if getattr(self, "head_reads_tokens", False) or pools_patches(self):
            raise TypeError(f"{type(self).__name__}'s head reads patch tokens; adaptive mode needs a class-token head")
        prefix, thresholds = self.num_prefix_tokens, self.thresholds
        packed, kept, scores = None, [], []
        for s, blk in iter_stages(self.blocks, self._prune_layers):
            if s is not None:
                packed = packed or PackedTokens.pack(x, prefix)
                rows = packed.patch_rows()
                seg = packed.seg.index_select(0, rows)
                score = self.score_predictor[s].keep_score_packed(
                    packed.x.index_select(0, rows), seg, packed.num_images
                )
                scores.append((score, seg))
                if decisions is None:
                    keep = threshold_keep(score, seg, packed.num_images, thresholds[s])
                else:
                    keep = forced_keep(decisions[s], packed, rows, x.shape[1] - prefix)
                kept_rows = rows[keep]
                kept.append(per_image(packed.grid.index_select(0, kept_rows), seg[keep], packed.num_images))
                prefix_rows = (packed.grid < 0).nonzero().squeeze(1)
                packed = packed.keep(torch.cat([prefix_rows, kept_rows]).sort().values)
            if packed is None:
                x = blk(x)
            else:
                packed = packed_block(blk, packed)
        if not torch.compiler.is_compiling():
            self.last_keep_scores = scores
        return (x if packed is None else packed.padded()), kept
