"""Forwards that only the benchmarks run, on a DynamicViT model (:class:`dynamicvit.models.vit.DynamicViTMixin`):
the adaptive mode executed the padded way (what packing is compared with) and the *limit* (the token budget
without the selection's cost)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dynamicvit.core.predictor import threshold_keep
from dynamicvit.core.tokens import (
    gather_tokens,
    iter_stages,
    patch_tokens,
    residual_attention,
    residual_mlp,
    with_prefix,
)

__all__ = ["limit_forward", "padded_forward"]


def padded_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits of the adaptive mode executed the padded way (the benchmarks' comparison for packing):
    the same per-image kept tokens, each image padded to the batch's largest count, attention masked,
    the padding computed."""
    if not model.supports_adaptive:
        raise TypeError(f"{type(model).__name__} has no adaptive keep mode, so no padded execution of it")
    x = model._embed(x)
    prefix, valid = model.num_prefix_tokens, None
    for s, blk in iter_stages(model.blocks, model._prune_layers):
        if s is not None:
            patches = patch_tokens(x, prefix)
            b, n, _ = patches.shape
            policy = None if valid is None else valid.unsqueeze(-1)
            log_probs = model.score_predictor[s](patches, policy)
            score = log_probs[..., 0] - log_probs[..., 1]
            if valid is not None:
                score = score.masked_fill(~valid, -torch.inf)
            seg = torch.arange(b, device=x.device).repeat_interleave(n)
            keep = threshold_keep(score.flatten(), seg, b, model.thresholds[s]).view(b, n)
            keep = keep if valid is None else keep & valid
            order = keep.to(torch.uint8).argsort(dim=1, descending=True, stable=True)[:, : int(keep.sum(1).max())]
            x = with_prefix(x, prefix, gather_tokens(patches, order))
            valid = keep.gather(1, order)
        if valid is None:
            x = blk(x)
            continue
        mask = torch.cat([valid.new_ones(valid.shape[0], prefix), valid], dim=1)[:, None, None, :]

        def heads(q, k, v, mask=mask, scale=blk.attn.scale):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)

        x = residual_mlp(blk, residual_attention(blk, x, heads))
    return model.forward_head(model.norm(x))


def limit_forward(model: nn.Module, x: torch.Tensor, score: bool = False) -> torch.Tensor:
    """Logits at this model's token budget without its selection cost: the first ``k_s`` tokens
    are sliced, no predictor, no gather (the benchmarks' *limit*). With ``score`` the predictors
    still score the patch tokens at each stage (scores unused)."""
    x = model._embed(x)
    prefix = model.num_prefix_tokens
    counts = model.keep_counts(x.shape[1] - prefix)
    index = None
    for s, blk in iter_stages(model.blocks, model._prune_layers):
        if s is not None:
            if score:
                model.score_predictor[s].keep_score(patch_tokens(x, prefix))
            x = x[:, : prefix + counts[s]]
            index = torch.arange(counts[s], device=x.device).expand(x.shape[0], -1)
        x = model._block(blk, x, index)
    return model.forward_head(model.norm(x))
