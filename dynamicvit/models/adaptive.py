"""The per-image keep modes of DynamicViT's eval forward: each image keeps the tokens its scores put above
the stage's threshold or its own learned count of its best tokens (the keep rule, :mod:`dynamicvit.core.keep`),
and the batch runs packed (no padding computed, no image depends on another)."""

from __future__ import annotations

import torch

from dynamicvit.core.tokens import PackedTokens, forced_keep, iter_stages, packed_block, per_image, pools_patches

__all__ = ["AdaptiveForwardMixin"]


class AdaptiveForwardMixin:
    """``_forward_adaptive`` for a DynamicViT model whose blocks are timm ``Block`` s (mixed in front of it)."""

    last_keep_scores: list[tuple[torch.Tensor, torch.Tensor]] = []
    last_budgets: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _forward_adaptive(self, x, decisions, trace: list | None = None):
        """Eval, a per-image keep mode: each image keeps its own tokens (:meth:`_image_keep`); from the first
        stage on the batch runs packed (:class:`PackedTokens`), so no padding is computed and an image's
        output does not depend on the other images. Returns padded tokens and, per stage, one index
        tensor per image. ``last_keep_scores`` holds each stage's (scores, image ids) of the tokens alive
        before it, ``last_budgets`` (learned mode) each stage's (budget log-odds, alive tokens) per image
        (for calibration). ``trace`` (a list) collects, for :func:`restore_tokens`, the full patch tokens
        before the first stage, then each stage's alive patch rows as (rows (T, C), (images, grid indices)),
        and the final ones."""
        if getattr(self, "head_reads_tokens", False) or pools_patches(self):
            name = type(self).__name__
            raise TypeError(f"{name}'s head reads patch tokens; a per-image keep mode needs a class-token head")
        prefix = self.num_prefix_tokens
        packed, kept, scores, budgets = None, [], [], []
        for s, blk in iter_stages(self.blocks, self._prune_layers):
            if s is not None:
                if trace is not None and packed is None:
                    trace.append((x[:, prefix:], None))
                packed = packed or PackedTokens.pack(x, prefix)
                rows = packed.patch_rows()
                seg = packed.seg.index_select(0, rows)
                tokens = packed.x.index_select(0, rows)
                if trace is not None and s > 0:
                    trace.append((tokens, (seg, packed.grid.index_select(0, rows))))
                score = self.score_predictor[s].keep_score_packed(tokens, seg, packed.num_images)
                scores.append((score, seg))
                if decisions is None:
                    keep = self._image_keep(s, score, seg, tokens, packed.num_images, budgets)
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
            self.last_keep_scores, self.last_budgets = scores, budgets
        if trace is not None and packed is not None:
            rows = packed.patch_rows()
            trace.append((packed.x.index_select(0, rows), (packed.seg[rows], packed.grid[rows])))
        return (x if packed is None else packed.padded()), kept

    def _image_keep(self, s: int, score, seg, tokens, num_images: int, budgets: list) -> torch.Tensor:
        """Stage ``s``'s (T,) bool keep mask of packed tokens of ``num_images`` images (``seg``: each token's
        image; ``tokens`` (T, C)):
        as the keep rule decides (:meth:`dynamicvit.core.keep.KeepRule.image_keep`; the learned rule appends the
        stage's (budget log-odds, alive tokens) per image to ``budgets``)."""
        return self.keep_rule.image_keep(self, s, score, seg, tokens, num_images, budgets)
