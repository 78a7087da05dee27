"""An attention prior for DynamicViT's predictors: the ranking a stage's block already computes.

Training-free Top-K and EViT (Liang et al., ICLR 2022, arXiv 2202.07800; Haurum et al., ICCVW 2023,
arXiv 2308.04657) keep the patches the class token attends to most, inside the block where a stage reduces,
after its attention and before its MLP. With the prior a DynamicViT stage decides at the same place and adds
``w · log(n · a)`` to its predictor's keep log-odds, ``a`` the attention each alive patch receives there
(mean over heads; from the class token, or averaged over the queries in a model without prefix tokens) and
``n`` the alive patches, so uniform attention adds nothing. The weight ``w`` is learned (per stage, starting
at 1) and the predictor's last layer starts at zero, so before training the kept set is Top-K's and training
can only add what attention misses (:meth:`~dynamicvit.core.predictor.TokenPredictor.use_attention_prior`).

:func:`attention_half` runs a timm block's attention branch (masked in training, with proportional
attention's ``log size`` bias when tokens were merged) and returns the attention received with it; the MLP
then runs on the tokens kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dynamicvit.core.attention import masked_attention
from dynamicvit.core.tokens import attention_output, attention_qkv

__all__ = ["attention_half", "log_prior", "received_attention"]

FLOOR = 1e-6  # the smallest attention share the log sees (a dead token's is 0)


def received_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    scale: float,
    prefix: int,
    policy: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """The attention each patch token receives (B, N), float32, without gradient.

    Args:
        q, k: (B, H, prefix + N, d) queries and keys.
        scale: the logits' scale.
        prefix: leading class/register tokens; with one or more, the first one's attention row (what
            Top-K and EViT read), else the mean over the queries.
        policy: (B, prefix + N) train-mode keep marks; dropped keys (and queries) count as absent.
        bias: an additive (B, 1, 1, prefix + N) bias of the logits (proportional attention).

    Returns:
        (B, N) shares of attention, mean over heads; dropped tokens receive 0.
    """
    q, k = q.detach(), k.detach()
    queries = q[:, :, :1] if prefix else q
    logits = ((queries * scale) @ k.transpose(-2, -1)).float()
    if bias is not None:
        logits = logits + bias.detach().float()
    if policy is not None:
        logits = logits.masked_fill(policy.detach()[:, None, None, :] < 0.5, -torch.inf)
    attn = logits.softmax(dim=-1).mean(dim=1)  # (B, queries, prefix + N)
    if prefix:
        return attn[:, 0, prefix:]
    if policy is None:
        return attn.mean(dim=1)
    alive = (policy.detach() > 0.5).float()
    return (attn * alive[..., None]).sum(dim=1)[:, prefix:] / alive.sum(dim=1, keepdim=True).clamp_min(1)


def log_prior(received: torch.Tensor, alive: torch.Tensor | None = None) -> torch.Tensor:
    """``log(n · a)`` of the attention ``received`` (B, N): 0 for a token with its even share of the ``n``
    alive tokens (``alive`` (B, N) marks them; ``None``: every token), floored so a dead token stays finite."""
    n = received.new_full((received.shape[0], 1), received.shape[1]) if alive is None else alive.float().sum(1, True)
    return (received * n).clamp_min(FLOOR).log()


def attention_half(
    blk: nn.Module,
    x: torch.Tensor,
    prefix: int,
    policy: torch.Tensor | None = None,
    size: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` plus a timm ``Block``'s attention branch, and the attention each patch token received in it.

    Args:
        blk: a timm ``Block``.
        x: tokens (B, prefix + N, C).
        prefix: leading class/register tokens.
        policy: (B, prefix + N) train-mode keep marks (masked attention), or ``None`` (every token alive).
        size: (B, prefix + N, 1) patches each token stands for (proportional attention), or ``None``.

    Returns:
        ``(x after attention, received (B, N))`` (:func:`received_attention`).
    """
    attn, h = blk.attn, blk.norm1(x)
    q, k, v = attention_qkv(attn, h)
    bias = None if size is None else size[..., 0].log()[:, None, None, :].to(q.dtype)
    if policy is None:
        drop = attn.attn_drop.p if blk.training else 0.0
        heads = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop, scale=attn.scale)
    else:
        full = None if bias is None else bias.expand(-1, q.shape[1], q.shape[2], -1)
        heads = masked_attention(q, k, v, policy, attn.scale, attn.attn_drop, full)
    x = x + blk.drop_path1(blk.ls1(attention_output(attn, h, heads)))
    return x, received_attention(q, k, attn.scale, prefix, policy, bias)
