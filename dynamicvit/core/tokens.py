"""Token operations shared by every family and method (in the spirit of timm's ``layers/``).

Row gather on the flattened batch, packed tokens (a different number per image), prefix
(class/distillation/register) handling, the bookkeeping of kept indices, the in-place class swap,
input checks, the pieces of timm's ``Attention`` and ``Block`` forwards that reduction methods
re-assemble, and the stage iterator. Nothing here knows a family or a method.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "POOLS",
    "pools_patches",
    "nchw_maps",
    "PackedTokens",
    "SparseOutput",
    "attention_output",
    "flat_rows",
    "attention_qkv",
    "check_finite",
    "check_image_batch",
    "forced_at",
    "forced_keep",
    "forced_positions",
    "gather_tokens",
    "in_channels",
    "layer_scale_residual",
    "index_mask",
    "iter_stages",
    "mixed_class",
    "packed_block",
    "patch_tokens",
    "per_image",
    "residual_attention",
    "residual_mlp",
    "with_prefix",
]


class SparseOutput(NamedTuple):
    """Result of ``model(x, return_decisions=True)``.

    Attributes:
        logits: class logits (B, K).
        decisions: one tensor per stage – train mode: hard masks (B, N); eval mode: kept indices (B, k_s)
            into the original grid (a per-image keep mode: one index tensor per image). Methods whose
            tokens are mixtures of patches (ToMe, PPT, MCTF, DiffRate) report none.
        features: final normalised tokens (prefix tokens first; all N patches in train mode, the kept ones
            in eval mode), or the final feature map of a hierarchical model.
    """

    logits: torch.Tensor
    decisions: list[torch.Tensor]
    features: torch.Tensor


# -- gather / scatter ------------------------------------------------------------------------
def flat_rows(index: torch.Tensor, tokens_per_image: int) -> torch.Tensor:
    """Per-image token indices (B, k) as row indices (B·k,) into the batch flattened to (B·N, C) (for
    ``index_select``/``index_add_`` on it)."""
    offsets = torch.arange(index.shape[0], device=index.device).unsqueeze(1) * tokens_per_image
    return (index + offsets).flatten()


def gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b]]`` for every image: (B, N, C), (B, k) → (B, k, C).

    One row ``index_select`` on the flattened batch: several times faster on CPU than ``gather`` with the
    index expanded over channels, which matters at batch 1 where pruning overhead is exposed.
    """
    b, n, c = x.shape
    return x.reshape(b * n, c).index_select(0, flat_rows(index, n)).view(b, index.shape[1], c)


def index_mask(indices, num_tokens: int) -> torch.Tensor:
    """Boolean (B, ``num_tokens``) map of kept indices: (B, k) (fixed mode) or one 1-D tensor per image
    (adaptive mode)."""
    if isinstance(indices, torch.Tensor):  # one scatter, no loop over the batch (which would fix its size)
        mask = torch.zeros(indices.shape[0], num_tokens, dtype=torch.bool, device=indices.device)
        return mask.scatter_(1, indices.long(), True)
    device = indices[0].device if len(indices) else None
    mask = torch.zeros(len(indices), num_tokens, dtype=torch.bool, device=device)
    for image, index in enumerate(indices):
        mask[image, index.long()] = True
    return mask


def per_image(values: torch.Tensor, seg: torch.Tensor, num_images: int) -> list[torch.Tensor]:
    """``values`` (R,) of rows ordered by image, one tensor per image (``seg``: each row's image)."""
    return list(values.split(torch.bincount(seg, minlength=num_images).tolist()))


# -- packed tokens: a different number per image, no padding ----------------------------------
class PackedTokens(NamedTuple):
    """The alive tokens of a batch as one sequence (T, C), image after image, each image's prefix
    tokens first: what per-token layers run on when every image keeps its own number of tokens.

    ``seg`` (T,) is each row's image, ``grid`` (T,) its index in the patch grid (−1 for prefix
    tokens), ``spans`` the (start, end) rows of each image, for attention within an image.
    """

    x: torch.Tensor
    seg: torch.Tensor
    grid: torch.Tensor
    spans: tuple[tuple[int, int], ...]

    @property
    def num_images(self) -> int:
        return len(self.spans)

    @classmethod
    def pack(cls, x: torch.Tensor, prefix: int) -> PackedTokens:
        """A batch (B, prefix + N, C) whose images all hold every token."""
        b, n, c = x.shape
        seg = torch.arange(b, device=x.device).repeat_interleave(n)
        grid = (torch.arange(n, device=x.device) - prefix).clamp_min(-1).repeat(b)
        return cls(x.reshape(b * n, c), seg, grid, tuple((i * n, (i + 1) * n) for i in range(b)))

    def patch_rows(self) -> torch.Tensor:
        """Rows (Tp,) of the patch tokens."""
        return (self.grid >= 0).nonzero().squeeze(1)

    def keep(self, rows: torch.Tensor) -> PackedTokens:
        """Only the rows ``rows`` (ascending), e.g. the prefix tokens and the kept patches."""
        seg = self.seg.index_select(0, rows)
        spans, start = [], 0
        for count in torch.bincount(seg, minlength=self.num_images).tolist():
            spans.append((start, start + count))
            start += count
        return PackedTokens(self.x.index_select(0, rows), seg, self.grid.index_select(0, rows), tuple(spans))

    def padded(self) -> torch.Tensor:
        """(B, longest, C): each image's tokens from row 0, zeros after its last."""
        longest = max(end - start for start, end in self.spans)
        out = self.x.new_zeros(self.num_images, longest, self.x.shape[-1])
        starts = torch.tensor([start for start, _ in self.spans], device=self.x.device)
        position = torch.arange(self.x.shape[0], device=self.x.device) - starts[self.seg]
        out[self.seg, position] = self.x
        return out


def packed_block(blk: nn.Module, tokens: PackedTokens) -> PackedTokens:
    """A timm ``Block`` on packed tokens: the per-token layers on all rows at once, attention within
    each image (SDPA on views of the packed q, k, v)."""

    def heads(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        per_image = [
            F.scaled_dot_product_attention(q[:, :, a:b], k[:, :, a:b], v[:, :, a:b], scale=blk.attn.scale)
            for a, b in tokens.spans
        ]
        return torch.cat(per_image, dim=2)

    x = residual_mlp(blk, residual_attention(blk, tokens.x.unsqueeze(0), heads))
    return tokens._replace(x=x.squeeze(0))


def restore_tokens(trace: Sequence[tuple[torch.Tensor, torch.Tensor | None]], num_tokens: int) -> torch.Tensor:
    """Every patch token back at its grid place (B, ``num_tokens``, C) with its latest features: a kept
    token's final ones, a dropped token's from the reduction step that dropped it (token restoration,
    for dense prediction on a pruned ViT).

    ``trace`` lists, in forward order, (patch tokens, which of them are alive): alive as ``None`` (all,
    tokens (B, N, C)), a hard mask (B, N) over full-length tokens (train mode), grid indices (B, k) of
    the k tokens given (eval mode), or (images, grid indices) of packed rows (T, C) (per-image keep modes).
    Later entries overwrite earlier ones where alive; masks blend, so straight-through gradients reach the
    masks."""
    full = None
    for tokens, alive in trace:
        if alive is None:
            full = tokens
        elif isinstance(alive, tuple):
            full = full.index_put(alive, tokens)
        elif alive.dtype.is_floating_point:
            keep = alive.unsqueeze(-1).to(tokens.dtype)
            full = keep * tokens + (1 - keep) * full
        else:
            index = alive.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])
            full = full.scatter(1, index, tokens)
    if full is None or full.shape[1] != num_tokens:
        raise ValueError(f"token restoration needs the full {num_tokens}-token map first in the trace")
    return full


# -- prefix tokens ---------------------------------------------------------------------------
def patch_tokens(x: torch.Tensor, prefix: int) -> torch.Tensor:
    """Patch tokens (B, N, C) after ``prefix`` special tokens, as a contiguous copy (LayerNorm on the
    strided slice is twice as slow)."""
    return x[:, prefix:].contiguous()


def with_prefix(x: torch.Tensor, prefix: int, patches: torch.Tensor) -> torch.Tensor:
    """``x``'s prefix tokens followed by ``patches``: the sequence after a reduction step."""
    return torch.cat([x[:, :prefix], patches], dim=1)


def forced_at(decisions: list[torch.Tensor] | None, stage: int) -> torch.Tensor | None:
    """The forced decision of ``stage``, or ``None`` when the predictors decide."""
    return None if decisions is None else decisions[stage]


def forced_positions(index: torch.Tensor | None, forced: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Map forced original-grid indices (B, k) to positions among the alive tokens ``index`` (B, n)
    (``None``: every token of the grid is alive, in grid order). Raises for out-of-range or not nested."""
    if forced.dim() != 2 or forced.min() < 0 or forced.max() >= num_tokens:
        raise ValueError(f"forced eval decisions must be (B, k) indices in [0, {num_tokens})")
    if index is None:
        return forced
    table = torch.full((index.shape[0], num_tokens), -1, dtype=torch.long, device=index.device)
    table.scatter_(1, index, torch.arange(index.shape[1], device=index.device).expand_as(index))
    pos = table.gather(1, forced)
    if (pos < 0).any():
        raise ValueError("forced eval decisions must be nested: a stage kept a token an earlier stage dropped")
    return pos


def forced_keep(forced, tokens: PackedTokens, rows: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """The keep mask over the packed patch ``rows`` for forced adaptive decisions: one 1-D tensor of grid
    indices per image. Raises for another form, out-of-range or not nested indices."""
    form = isinstance(forced, (list, tuple)) and len(forced) == tokens.num_images
    if not form or not all(isinstance(f, torch.Tensor) and f.dim() == 1 for f in forced):
        raise ValueError(
            f"forced decisions in a per-image keep mode must be, per stage, a list of {tokens.num_images} 1-D index "
            "tensors (one per image)"
        )
    if any(index.numel() and (index.min() < 0 or index.max() >= num_tokens) for index in forced):
        raise ValueError(f"forced eval decisions must be indices in [0, {num_tokens})")
    table = index_mask([index.to(rows.device) for index in forced], num_tokens)
    keep = table[tokens.seg.index_select(0, rows), tokens.grid.index_select(0, rows)]
    if int(keep.sum()) != int(table.sum()):
        raise ValueError("forced eval decisions must be nested: a stage kept a token an earlier stage dropped")
    return keep


# -- timm Attention / Block pieces -----------------------------------------------------------
def attention_qkv(attn: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v (B, H, N, d) of a timm ``Attention`` for tokens ``x`` (q/k norms applied)."""
    b, n, _ = x.shape
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    return attn.q_norm(q), attn.k_norm(k), v


def biased_qkv(attn: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v (B, H, N, D) of BEiT's and EVA's attention: one ``qkv`` Linear whose q and v biases are
    separate parameters (``q_bias``, ``k_bias`` – zeros –, ``v_bias``), or none."""
    b, n, _ = x.shape
    if attn.q_bias is None:
        qkv = attn.qkv(x)
    else:
        bias = torch.cat((attn.q_bias, attn.k_bias, attn.v_bias))
        qkv = attn.qkv(x) + bias if attn.qkv_bias_separate else F.linear(x, attn.qkv.weight, bias)
    return qkv.reshape(b, n, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)


def layer_scale_residual(blk: nn.Module, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
    """The rest of a pre-norm BEiT/EVA block after its attention output ``attended``: the attention residual
    and the MLP residual, each scaled by the block's layer scale (``gamma_1``/``gamma_2``, or none)."""
    x = x + blk.drop_path1(attended if blk.gamma_1 is None else blk.gamma_1 * attended)
    mlp = blk.mlp(blk.norm2(x))
    return x + blk.drop_path2(mlp if blk.gamma_2 is None else blk.gamma_2 * mlp)


def attention_output(attn: nn.Module, x: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
    """The rest of timm's ``Attention.forward`` after the heads (B, H, N, d): merge, gate, project."""
    b, _, n, _ = heads.shape
    out = heads.transpose(1, 2).reshape(b, n, attn.num_heads * attn.head_dim)
    if getattr(attn, "norm", None) is not None:  # timm's scale_norm (newer releases)
        out = attn.norm(out)
    if getattr(attn, "gate", None) is not None:
        out = out * attn.gate(x).sigmoid()
    return attn.proj_drop(attn.proj(out))


Heads = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def residual_attention(blk: nn.Module, x: torch.Tensor, heads: Heads) -> torch.Tensor:
    """``x`` plus a timm ``Block``'s attention branch, with ``heads(q, k, v)`` computing the heads
    (B, H, N, d) in place of timm's attention (masked, proportional, ...)."""
    h = blk.norm1(x)
    q, k, v = attention_qkv(blk.attn, h)
    return x + blk.drop_path1(blk.ls1(attention_output(blk.attn, h, heads(q, k, v))))


def residual_mlp(blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` plus a timm ``Block``'s MLP branch."""
    return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))


def iter_stages(blocks: Sequence[nn.Module], prune_layers: Sequence[int]) -> Iterator[tuple[int | None, nn.Module]]:
    """``(stage, block)`` in forward order; ``stage`` is the index of the reduction step that runs
    right before the block, ``None`` for blocks without one."""
    stage_of = {layer: s for s, layer in enumerate(prune_layers)}
    for i, blk in enumerate(blocks):
        yield stage_of.get(i), blk


# -- models ----------------------------------------------------------------------------------
_MIXED_CLASSES: dict[tuple[type, type], type] = {}


def mixed_class(mixin: type, base: type, prefix: str) -> type:
    """``class <prefix><Base>(mixin, base)``, created once per pair (swapped in like ToMe)."""
    if (mixin, base) not in _MIXED_CLASSES:
        _MIXED_CLASSES[mixin, base] = type(f"{prefix}{base.__name__}", (mixin, base), {})
    return _MIXED_CLASSES[mixin, base]


def in_channels(model: nn.Module) -> int:
    """Input channels of a model: its patch embedding's (plain or conv stem), else its first conv's."""
    pe = getattr(model, "patch_embed", None) or model
    return getattr(pe, "in_chans", None) or next(m.in_channels for m in pe.modules() if isinstance(m, nn.Conv2d))


def check_image_batch(x: torch.Tensor, channels: int) -> None:
    """Raise a clear ``ValueError`` unless ``x`` is a (B, ``channels``, H, W) tensor."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"expected an image batch (B, C, H, W), got {shape}")
    if x.shape[1] != channels:
        raise ValueError(f"model expects {channels} input channels, got {x.shape[1]}")


def check_finite(images: torch.Tensor, out: torch.Tensor) -> None:
    """Raise for NaN/Inf images, found cheaply: ``out`` (a model output every pixel reaches) is
    checked first, the images only when it is not finite. Skipped while tracing or compiling."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return
    if not torch.isfinite(out).all() and not torch.isfinite(images).all():
        raise ValueError("input contains NaN or Inf values")


def nchw_maps(feats: list[torch.Tensor], channels: list[int]) -> list[torch.Tensor]:
    """A timm features_only backbone's maps as NCHW (timm's Swin features come channels-last)."""
    return [
        f.permute(0, 3, 1, 2) if f.shape[1] != c and f.shape[-1] == c else f
        for f, c in zip(feats, channels, strict=True)
    ]


POOLS = ("avg", "max", "avgmax")


def pools_patches(model: nn.Module) -> bool:
    """Whether the head pools patch tokens (average, max, attention pooling) instead of reading the class token."""
    return model.attn_pool is not None or model.global_pool in POOLS
