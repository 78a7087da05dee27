"""Attention and token fusion for merging tokens (PPT, MCTF, DiffRate, and DynamicViT's merged drops).

A merge is written as a :class:`Merge`: the ``anchors`` (one token per output slot, in slot
order) and the ``sources`` fused into them, each with its target slot. Fusing gathers the
anchors and adds the sources into their slots: in eager mode with ``scatter_add`` (what the
methods' own code does; no multiply-adds, as the papers count), and while exporting to ONNX with
a small one-hot matmul (slots × sources) instead, which TensorRT converts (it has no
ScatterElements with add). Both give the same sums; every image is fused alone.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from dynamicvit.core.tokens import attention_output, attention_qkv, gather_tokens

__all__ = [
    "Merge",
    "attend",
    "bipartite_merge_plan",
    "fuse_tokens",
    "proportional_probs",
    "rank_of",
    "slot_sums",
    "soft_merge",
]


class Merge(NamedTuple):
    """Which tokens survive as slots and which fuse into them (all (B, ·) long tensors).

    Attributes:
        anchors: the token that opens each output slot, in slot order (B, T').
        sources: the tokens fused away (B, r).
        targets: the slot each source joins (B, r), in 0 … T' − 1.
    """

    anchors: torch.Tensor
    sources: torch.Tensor
    targets: torch.Tensor

    def shifted(self, prefix: int) -> Merge:
        """The same plan over patch tokens placed after ``prefix`` untouched tokens (class, registers)."""
        b = self.anchors.shape[0]
        keep = torch.arange(prefix, device=self.anchors.device).expand(b, prefix)
        return Merge(torch.cat([keep, self.anchors + prefix], 1), self.sources + prefix, self.targets + prefix)


def proportional_probs(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, size: torch.Tensor) -> torch.Tensor:
    """Softmax attention probabilities (B, H, N, N), float32, with ToMe's proportional attention:
    a key standing for ``size`` tokens gets ``+ log size`` (``size`` (B, N, 1))."""
    logits = (q * attn.scale) @ k.transpose(-2, -1)
    return (logits.float() + size[..., 0].log()[:, None, None, :]).softmax(dim=-1)


def attend(
    blk: nn.Module, x: torch.Tensor, size: torch.Tensor, probs: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """A timm block's attention residual with proportional attention.

    Args:
        blk: a timm ``Block``.
        x: tokens (B, N, C).
        size: how many patches each token stands for (B, N, 1).
        probs: whether to return the attention probabilities (computed explicitly; without, the
            fused SDPA kernel runs).

    Returns:
        ``(x + attention, probabilities or None, keys, values)``, keys and values (B, H, N, d).
    """
    attn, h = blk.attn, blk.norm1(x)
    q, k, v = attention_qkv(attn, h)
    drop = attn.attn_drop.p if blk.training else 0.0
    if probs:
        p = proportional_probs(attn, q, k, size)
        heads = F.dropout(p, drop, blk.training).to(v.dtype) @ v
    else:
        p, bias = None, size[..., 0].log()[:, None, None, :].to(q.dtype)
        heads = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop, scale=attn.scale)
    return x + blk.drop_path1(blk.ls1(attention_output(attn, h, heads))), p, k, v


def fuse_tokens(
    x: torch.Tensor, size: torch.Tensor, plan: Merge, weight: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Average every slot's tokens, weighted by ``weight`` × size (default: by size), and add their sizes.

    Args:
        x: tokens (B, T, C).
        size: patches each token stands for (B, T, 1), float32.
        plan: anchors and sources (:class:`Merge`).
        weight: extra per-token weights (B, T) (MCTF: attention received).

    Returns:
        ``(fused tokens (B, T', C), their sizes (B, T', 1))``.
    """
    w = size if weight is None else weight.float()[..., None] * size
    c = x.shape[-1]
    # one gather and one scatter for the weighted tokens, their weights and their sizes (float32 sums)
    sums = slot_sums(torch.cat([x.float() * w, w, size], dim=-1), plan)
    return (sums[..., :c] / sums[..., c : c + 1]).to(x.dtype), sums[..., c + 1 :]


def slot_sums(values: torch.Tensor, plan: Merge) -> torch.Tensor:
    """The sum of ``values`` (B, T, C) over each slot's tokens (B, T', C): the anchors gathered, the sources
    added into their slots (``scatter_add``; a one-hot matmul while exporting to ONNX)."""
    anchors, sources = gather_tokens(values, plan.anchors), gather_tokens(values, plan.sources)
    if torch.onnx.is_in_onnx_export():
        slots = torch.arange(plan.anchors.shape[1], device=values.device)
        onehot = (plan.targets[:, None, :] == slots[None, :, None]).to(values.dtype)  # (B, T', r)
        return anchors + onehot @ sources
    return anchors.scatter_add(1, plan.targets[..., None].expand_as(sources), sources)


def rank_of(order: torch.Tensor) -> torch.Tensor:
    """The inverse permutation of ``order`` (B, n): the position of every index in it."""
    return order.argsort(dim=-1)


def bipartite_merge_plan(metric: torch.Tensor, r: int) -> Merge:
    """ToMe's bipartite soft matching as a :class:`Merge` of ``n`` tokens into ``n − r`` slots.

    Even tokens form set A, odd tokens set B; each A token's most cosine-similar B token is its
    edge; the ``r`` A tokens with the strongest edges fuse into their partner.

    Args:
        metric: per-token features to compare (B, n, d).
        r: tokens to merge away (at most half of ``n``).

    Returns:
        The plan: A tokens left open the first slots (in order of position, as ToMe's code keeps them), B
        tokens the rest.
    """
    keys = F.normalize(metric.float(), dim=-1)
    n, na = metric.shape[1], (metric.shape[1] + 1) // 2
    best, partner = (keys[:, ::2] @ keys[:, 1::2].transpose(1, 2)).max(dim=-1)
    order = best.argsort(dim=-1, descending=True)  # A positions, strongest edge first
    b_tokens = torch.arange(1, n, 2, device=metric.device).expand(metric.shape[0], n - na)
    anchors = torch.cat([2 * order[:, r:].sort(dim=1).values, b_tokens], dim=1)
    return Merge(anchors, 2 * order[:, :r], na - r + partner.gather(1, order[:, :r]))


def soft_merge(
    x: torch.Tensor, size: torch.Tensor, share: torch.Tensor, kept: torch.Tensor, prefix: int, mean: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training-time merge of a forward that keeps every token in the batch (DiffRate's search,
    DynamicViT's merged drops): each patch token sends ``share`` of itself to the most cosine-similar token
    that ``kept`` marks; straight-through ``share`` and ``kept`` carry the gradient.

    Args:
        x: tokens (B, prefix + N, C).
        size: patches each token stands for (B, prefix + N, 1), float32.
        share: the fraction of itself each patch token sends (B, N).
        kept: 0/1 marks of the tokens that may receive (B, N).
        prefix: untouched leading tokens (class, registers).
        mean: DiffRate's rule – every token weighs 1 in the average and a sender adds its size scaled by its
            similarity – instead of ToMe's size-weighted average with sizes added.

    Returns:
        ``(tokens, sizes)``: every kept token's weighted average with what it received, and its new size.
    """
    patches = F.normalize(x[:, prefix:].detach().float(), dim=-1)
    best, target = (patches @ patches.transpose(1, 2)).masked_fill((kept < 0.5)[:, None, :], -2.0).max(dim=-1)
    own = size[:, prefix:]
    weight = torch.ones_like(own) if mean else own
    route = F.one_hot(target, patches.shape[1]).float() * share[..., None]  # (B, N, N): sender → receiver
    total = weight + (route * weight).sum(dim=1)[..., None]
    merged = (weight * x[:, prefix:].float() + (route * weight).transpose(1, 2) @ x[:, prefix:].float()) / total
    scale = best.clamp(0, 1)[..., None] if mean else torch.ones_like(own)
    new_size = own + (route * own * scale).sum(dim=1)[..., None]
    return torch.cat([x[:, :prefix], merged.to(x.dtype)], dim=1), torch.cat([size[:, :prefix], new_size], dim=1)
