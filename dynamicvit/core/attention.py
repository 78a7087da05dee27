"""DynamicViT's train-mode attention masking (arXiv 2106.02034, Sec. 3.3), fused and exact.

In training no token is removed: the keep decisions ``policy`` (B, N) gate the keys of every later
attention, and a token always sees itself. The authors' release computes, per query row ``i`` with
logits ``x_ij``, ``p'_ij`` the policy with the diagonal set to 1, ``m_i = max_j x_ij`` over *all* keys
and ``S_i = sum_j p'_ij exp(x_ij - m_i)``::

    a_ij = (p'_ij exp(x_ij - m_i) + eps / N) / (S_i + eps)

The ``eps`` smoothing matters: in trained models a row's visible logits can sit 15-20 below a dropped
key's, where the smoothing decides the weights. Written out, the output is

    out_i = (sum_j p'_ij exp(x_ij - m_i) v_j + eps * mean_j v_j) / (S_i + eps)

which :class:`FusedMaskedAttention` computes with one (B, H, N, N) buffer, in place, and differentiates
by hand (the gradients of ``q``, ``k``, ``v``, the policy and an additive position bias, including the
path through ``m_i``), recomputing the logits in the backward pass instead of keeping them.
:func:`masked_softmax` with :func:`reference_masked_attention` is the plain autograd reference kept for
tests and for attention dropout, which the fused path does not apply.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = [
    "EPS",
    "FusedMaskedAttention",
    "fused_masked_attention",
    "masked_attention",
    "masked_softmax",
    "reference_masked_attention",
]

EPS = 1e-6
_FUSED = [True]


@contextmanager
def fused_masked_attention(enabled: bool) -> Iterator[None]:
    """Use (``True``, the default) or bypass the fused masked attention inside the block, e.g. to time
    the two (``dynamicvit bench --training``) or to check one against the other.

    Args:
        enabled: whether :func:`masked_attention` takes the fused path.
    """
    previous, _FUSED[0] = _FUSED[0], enabled
    try:
        yield
    finally:
        _FUSED[0] = previous


def masked_softmax(logits: torch.Tensor, policy: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Softmax over keys weighted by ``policy`` (B, N) with the diagonal always on, in float32.

    Args:
        logits: (B, H, N, N) attention logits.
        policy: (B, N) keep decisions (0/1, differentiable).
        eps: the release's smoothing.

    Returns:
        The (B, H, N, N) float32 weights ``(w + eps/N) / (sum w + eps)`` with ``w = exp(a - max) * G``;
        safe under fp16/bf16 autocast.
    """
    n = logits.shape[-1]
    keys = policy.float()[:, None, None, :]
    eye = torch.eye(n, dtype=torch.float32, device=logits.device)
    gate = keys + (1.0 - keys) * eye
    logits = logits.float()
    weights = (logits - logits.amax(dim=-1, keepdim=True)).exp() * gate
    return (weights + eps / n) / (weights.sum(dim=-1, keepdim=True) + eps)


def masked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    policy: torch.Tensor,
    scale: float,
    drop: nn.Module,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Heads of attention under the train-mode ``policy``, fused unless attention dropout is active.

    Args:
        q, k, v: (B, H, N, D) queries, keys and values.
        policy: (B, N) keep decisions.
        scale: the logits' scale (``D ** -0.5`` in timm).
        drop: the attention's dropout module.
        bias: an additive (1|B, H, N, N) position bias, or ``None``.

    Returns:
        (B, H, N, D) heads in ``v``'s dtype.
    """
    dropping = drop.training and getattr(drop, "p", 0.0) > 0
    if _FUSED[0] and not dropping:
        return FusedMaskedAttention.apply(q, k, v, policy, bias, scale)
    return reference_masked_attention(q, k, v, policy, scale, drop, bias)


def reference_masked_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    policy: torch.Tensor,
    scale: float,
    drop: nn.Module,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`masked_attention` as plain autograd operations over :func:`masked_softmax` (with dropout);
    when a backward will follow, the weights are recomputed in it (activation checkpointing).

    Args and Returns as :func:`masked_attention`.
    """
    if torch.is_grad_enabled() and (q.requires_grad or policy.requires_grad):
        return checkpoint(_attend, q, k, v, policy, scale, drop, bias, use_reentrant=False)
    return _attend(q, k, v, policy, scale, drop, bias)


def _attend(q, k, v, policy, scale: float, drop: nn.Module, bias=None) -> torch.Tensor:
    logits = (q * scale) @ k.transpose(-2, -1)
    weights = drop(masked_softmax(logits if bias is None else logits + bias, policy))
    return weights.to(v.dtype) @ v


def _wide(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32, or float64 when it is float64 (what the fused path computes elementwise in)."""
    return t.to(torch.promote_types(t.dtype, torch.float32))


def _logits(q: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None, scale: float) -> torch.Tensor:
    """(B, H, N, N) logits in float32 (float64 for float64 input), a fresh buffer the caller may overwrite."""
    logits = _wide((q * scale) @ k.transpose(-2, -1))
    return logits if bias is None else logits.add_(bias)


def _gate_(scores: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """``scores`` times the gate ``p'`` in place: keys weighted by the policy (B, 1, 1, N), the diagonal
    (a token's own key) kept."""
    own = scores.diagonal(dim1=-2, dim2=-1).clone()
    scores.mul_(keys).diagonal(dim1=-2, dim2=-1).copy_(own)
    return scores


def _sum_to(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """``grad`` summed over the dimensions a broadcast of ``shape`` expanded."""
    dims = [i for i, (g, s) in enumerate(zip(grad.shape, shape, strict=True)) if s == 1 and g != 1]
    return grad.sum(dims, keepdim=True) if dims else grad


class FusedMaskedAttention(torch.autograd.Function):
    """Exact :func:`reference_masked_attention` (without dropout) with one (B, H, N, N) buffer in the
    forward pass and two in the backward, where the logits are recomputed instead of kept.

    ``apply(q, k, v, policy, bias, scale, eps=EPS)``; ``bias`` may be ``None``. Elementwise work runs in
    float32 (float64 for float64 input) whatever the autocast; the matrix products run in ``v``'s dtype
    as the reference's do. Ties for a row's maximum send the maximum's gradient to one of them (the
    reference splits it); with real-valued logits this does not arise.
    """

    @staticmethod
    def forward(ctx, q, k, v, policy, bias, scale: float, eps: float = EPS):  # noqa: D102
        ctx.dtypes = q.dtype, k.dtype
        with torch.autocast(q.device.type, enabled=False):
            q, k = q.to(v.dtype), k.to(v.dtype)
            weights = _logits(q, k, bias, scale)
            top, index = weights.max(dim=-1, keepdim=True)
            weights = _gate_(weights.sub_(top).exp_(), _wide(policy)[:, None, None, :])  # p'_ij exp(x_ij - m_i)
            denom = weights.sum(dim=-1, keepdim=True).add_(eps)  # S_i + eps
            out = _wide(weights.to(v.dtype) @ v).add_(eps * _wide(v).mean(dim=-2, keepdim=True)).div_(denom)
        ctx.save_for_backward(q, k, v, policy, bias, top, index, denom, out)
        ctx.scale, ctx.eps = scale, eps
        return out.to(v.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # noqa: D102
        q, k, v, policy, bias, top, index, denom, out = ctx.saved_tensors
        with torch.autocast(q.device.type, enabled=False):
            grads = _backward(q, k, v, policy, bias, top, index, denom, out, grad_out, ctx.scale, ctx.eps)
        d_q, d_k, d_v, d_policy, d_bias = grads
        return d_q.to(ctx.dtypes[0]), d_k.to(ctx.dtypes[1]), d_v, d_policy, d_bias, None, None


def _backward(q, k, v, policy, bias, top, index, denom, out, grad_out, scale: float, eps: float):
    """:class:`FusedMaskedAttention`'s gradients. With ``s_ij = e_ij / D_i`` and
    ``T_ij = s_ij (g_i.v_j - g_i.out_i)``, the logits' gradient is ``T_ij`` gated like the weights plus,
    at each row's maximum, ``-eps (g_i.out_i - g_i.mean(v)) / D_i``; the policy's is ``sum T_ij`` off
    the diagonal; the values' is ``a^T g``."""
    dt = v.dtype
    grad, keys = _wide(grad_out), _wide(policy)[:, None, None, :]
    scaled = _logits(q, k, bias, scale).sub_(top + denom.log()).exp_()  # s_ij
    delta = (grad * out).sum(dim=-1, keepdim=True)
    inner = _wide(grad.to(dt) @ v.transpose(-2, -1)).sub_(delta).mul_(scaled)  # T_ij
    d_policy = inner.sum(dim=(1, 2)) - inner.diagonal(dim1=-2, dim2=-1).sum(dim=1)
    d_v = _wide(_gate_(scaled, keys).transpose(-2, -1).to(dt) @ grad.to(dt))
    d_v += eps / v.shape[-2] * (grad / denom).sum(dim=-2, keepdim=True)
    mean_v = _wide(v).mean(dim=-2, keepdim=True)
    d_top = (grad * mean_v).sum(dim=-1, keepdim=True).sub_(delta).mul_(eps).div_(denom)  # dL/dm_i
    d_logits = _gate_(inner, keys).scatter_add_(-1, index, d_top)
    d_q = _wide(d_logits.to(dt) @ k).mul_(scale)
    d_k = _wide(d_logits.transpose(-2, -1).to(dt) @ q).mul_(scale)
    d_bias = None if bias is None else _sum_to(d_logits, bias.shape).to(bias.dtype)
    return d_q, d_k, d_v.to(dt), d_policy.to(policy.dtype), d_bias
