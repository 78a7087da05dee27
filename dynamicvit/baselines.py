"""Other token-reduction methods on the same timm ViTs, for comparisons at equal FLOPs.

Each is written from its paper and swapped into a timm ``VisionTransformer`` in place, like
:func:`dynamicvit.sparsify` (weights untouched, same ``forward`` signature):

* ``random`` – keep ``k_s`` uniformly random patch tokens per image at each stage;
* ``static`` – keep the ``k_s`` patches nearest the grid centre, the same for every image;
* ``pool`` – structural down-sampling: average-pool the patch grid at each stage to
  about ``k_s`` tokens (side × sqrt(rho) per stage);
* ``evit`` – EViT (Liang et al., ICLR 2022): in the block of each stage, after attention, keep
  the ``k_s`` patches the class token attends to most (mean over heads) and, with ``fuse``,
  add the rest weighted by that attention into one extra token; the MLP runs on what is kept.
  A fused token from an earlier stage is folded into the new one (EViT lets it compete);
* ``tome`` – ToMe (Bolya et al., ICLR 2023): in every block, after attention, merge ``r``
  tokens by bipartite soft matching on the keys (mean over heads, cosine similarity),
  average merged tokens by size and use proportional attention (``+ log size`` on the keys).

``random``/``static``/``pool``/``evit`` follow DynamicViT's keep schedule (``keep_rate``,
``prune_layers``); ToMe has its own knob ``r``. Every method computes the same in train and
eval mode (each image keeps the same count, so nothing has to be masked), so the engine can
fine-tune them. :func:`set_budget` tunes any method's knob to a fraction of the dense MACs.
Prefix tokens (class, distillation, registers) are never dropped or merged.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .models import sparsify
from .predictor import check_keep_rate
from .vit import (
    TokenReductionMixin,
    _gather_tokens,
    _patches,
    attention_output,
    attention_qkv,
    check_prune_layers,
    check_supported,
    default_prune_layers,
    mixed_class,
)

__all__ = [
    "METHODS",
    "BaselineViTMixin",
    "apply_method",
    "set_budget",
    "random_decisions",
    "random_selector",
]

METHODS = ("dynamicvit", "random", "static", "pool", "evit", "tome")


def random_decisions(
    batch: int, num_patches: int, counts: list[int], generator: torch.Generator | None = None, device=None
) -> list[torch.Tensor]:
    """Nested uniformly random kept indices (B, k_s) per stage, the same counts as the predictor's."""
    keys = torch.rand(batch, num_patches, generator=generator).to(device)
    order = keys.argsort(dim=1)  # a random permutation per image; nested prefixes of it
    return [order[:, :k] for k in counts]


def random_selector(seed: int = 0):
    """A ``decisions_fn(batch, num_patches, counts)`` for :func:`dynamicvit.engine.evaluate`, seeded."""
    gen = torch.Generator().manual_seed(seed)
    return lambda batch, num_patches, counts: random_decisions(batch, num_patches, counts, gen)


def _centre_scores(index: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Higher for patches nearer the grid centre; ties broken by position (deterministic)."""
    gh, gw = grid
    row, col = (index // gw).float(), (index % gw).float()
    dist = (row + 0.5 - gh / 2) ** 2 + (col + 0.5 - gw / 2) ** 2
    return -(dist + 1e-4 * index.float() / index.numel())


def _bipartite_merge(
    x: torch.Tensor, size: torch.Tensor, metric: torch.Tensor, r: int, prefix: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """ToMe's bipartite soft matching: merge ``r`` of the patch tokens into their best partners.

    Alternate patch tokens form sets A and B; each A token's most similar B token is its
    edge; the ``r`` strongest edges merge (size-weighted mean). Prefix tokens are untouched.
    """
    c = x.shape[-1]
    keys = metric[:, prefix:]
    keys = keys / keys.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    scores = keys[:, ::2] @ keys[:, 1::2].transpose(1, 2)
    best, partner = scores.max(dim=-1)
    edges = best.argsort(dim=-1, descending=True)[..., None]
    unmerged, src = edges[:, r:], edges[:, :r]
    dst = partner[..., None].gather(1, src)

    weighted, sizes = x[:, prefix:] * size[:, prefix:], size[:, prefix:]
    xa, xb = weighted[:, ::2], weighted[:, 1::2]
    sa, sb = sizes[:, ::2], sizes[:, 1::2]
    xb = xb.scatter_reduce(1, dst.expand(-1, -1, c), xa.gather(1, src.expand(-1, -1, c)), reduce="sum")
    sb = sb.scatter_reduce(1, dst, sa.gather(1, src), reduce="sum")
    merged_size = torch.cat([sa.gather(1, unmerged), sb], dim=1)
    merged = torch.cat([xa.gather(1, unmerged.expand(-1, -1, c)), xb], dim=1) / merged_size
    return torch.cat([x[:, :prefix], merged.to(x.dtype)], dim=1), torch.cat([size[:, :prefix], merged_size], dim=1)


class BaselineViTMixin(TokenReductionMixin):
    """A timm ViT reduced by one of the baseline methods (see the module docstring)."""

    method: str
    fuse: bool
    tome_r: int

    def token_counts(self, num_patches: int | None = None) -> list[int]:
        n = num_patches or self.num_patches
        if self.method == "tome":
            counts = []
            for _ in self.blocks:
                n -= min(self.tome_r, n // 2)
                counts.append(n)
            return counts
        if self.method == "pool":
            side = math.isqrt(n)
            grid = self.patch_embed.grid_size if n == self.num_patches else (side, n // max(side, 1))
            return [h * w for h, w in self._pool_sizes(grid)]
        extra = 1 if self.method == "evit" and self.fuse else 0
        return [k + extra for k in self.keep_counts(n)]

    def _pool_sizes(self, grid: tuple[int, int]) -> list[tuple[int, int]]:
        scale = [self._keep_rate ** ((s + 1) / 2) for s in range(len(self._prune_layers))]
        return [(max(1, round(grid[0] * f)), max(1, round(grid[1] * f))) for f in scale]

    def forward_sparse(
        self, x: torch.Tensor, decisions: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Embed, run the reduced blocks, final norm → (tokens, kept patch indices per stage).

        Indices (B, k_s) into the original grid for ``random``/``static``/``evit``; an
        empty list for ``pool`` and ``tome``, whose tokens are mixtures of patches.
        """
        if decisions is not None:
            raise ValueError(f"the {self.method} baseline chooses its own tokens; forced decisions are DynamicViT's")
        self._check_input(x)
        ph, pw = self.patch_embed.patch_size
        grid = (x.shape[-2] // ph, x.shape[-1] // pw)
        tokens = self._embed(x)
        if self.method == "tome":
            tokens, out = self._forward_tome(tokens), []
        elif self.method == "pool":
            tokens, out = self._forward_pool(tokens, grid), []
        else:
            tokens, out = self._forward_select(tokens, grid)
        tokens = self.norm(tokens)
        self._check_finite(x, tokens)
        return tokens, out

    def _forward_select(self, x: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        prefix = self.num_prefix_tokens
        b, n = x.shape[0], x.shape[1] - prefix
        counts, stage_of = self.keep_counts(n), self.stage_of_block
        index = torch.arange(n, device=x.device).expand(b, n)
        fused, kept = False, []
        for i, blk in enumerate(self.blocks):
            s = stage_of.get(i)
            if s is None:
                x = blk(x)
                continue
            if self.method == "evit":
                x, keep = self._evit_block(blk, x, index.shape[1], counts[s], fused)
                fused = self.fuse
            else:
                if self.method == "random":
                    scores = torch.rand(index.shape, generator=self._generator).to(x.device)
                else:
                    scores = _centre_scores(index, grid)
                keep = scores.topk(counts[s], dim=1).indices
                x = blk(torch.cat([x[:, :prefix], _gather_tokens(_patches(x, prefix), keep)], dim=1))
            index = index.gather(1, keep)
            kept.append(index)
        return x, kept

    def _evit_block(self, blk: nn.Module, x: torch.Tensor, n: int, k: int, fused: bool):
        """One EViT block: attention on all tokens, keep the class token's top-k patches, MLP."""
        prefix = self.num_prefix_tokens
        h = blk.norm1(x)
        q, key, v = attention_qkv(blk.attn, h)
        attn = ((q * blk.attn.scale) @ key.transpose(-2, -1)).float().softmax(dim=-1)
        x = x + blk.drop_path1(blk.ls1(attention_output(blk.attn, h, blk.attn.attn_drop(attn).to(v.dtype) @ v)))
        cls_attn = attn[:, :, 0].mean(dim=1)  # (B, T) attention of the class token, mean over heads
        order = cls_attn[:, prefix : prefix + n].argsort(dim=1, descending=True)
        keep, drop = order[:, :k], order[:, k:]
        patches = x[:, prefix : prefix + n]
        parts = [x[:, :prefix], _gather_tokens(patches, keep)]
        if self.fuse:
            weights = cls_attn[:, prefix : prefix + n].gather(1, drop).unsqueeze(-1).to(x.dtype)
            extra = (_gather_tokens(patches, drop) * weights).sum(dim=1, keepdim=True)
            if fused:
                extra = extra + cls_attn[:, -1:, None].to(x.dtype) * x[:, -1:]
            parts.append(extra)
        x = torch.cat(parts, dim=1)
        return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x)))), keep

    def _forward_pool(self, x: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        prefix, stage_of = self.num_prefix_tokens, self.stage_of_block
        sizes = self._pool_sizes(grid)
        for i, blk in enumerate(self.blocks):
            s = stage_of.get(i)
            if s is not None:
                b, _, c = x.shape
                patches = x[:, prefix:].transpose(1, 2).reshape(b, c, *grid)
                pooled = F.adaptive_avg_pool2d(patches, sizes[s]).flatten(2).transpose(1, 2)
                x, grid = torch.cat([x[:, :prefix], pooled], dim=1), sizes[s]
            x = blk(x)
        return x

    def _forward_tome(self, x: torch.Tensor) -> torch.Tensor:
        prefix = self.num_prefix_tokens
        size = x.new_ones(x.shape[0], x.shape[1], 1, dtype=torch.float32)
        for blk in self.blocks:
            attn = blk.attn
            h = blk.norm1(x)
            q, k, v = attention_qkv(attn, h)
            bias = size[..., 0].log()[:, None, None, :].to(q.dtype)  # proportional attention
            drop = attn.attn_drop.p if self.training else 0.0
            heads = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop, scale=attn.scale)
            x = x + blk.drop_path1(blk.ls1(attention_output(attn, h, heads)))
            r = min(self.tome_r, (x.shape[1] - prefix) // 2)
            if r > 0:
                x, size = _bipartite_merge(x, size, k.mean(dim=1), r, prefix)
            x = x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))
        return x


def apply_method(
    model: nn.Module,
    method: str,
    keep_rate: float = 0.7,
    prune_layers=None,
    r: int = 8,
    fuse: bool = True,
    seed: int = 0,
) -> nn.Module:
    """Reduce a timm ViT in place with ``method`` (one of :data:`METHODS`) and return it.

    ``keep_rate``/``prune_layers`` set the schedule of the keep-based methods (and
    ``dynamicvit``, whose predictors are new and need training); ``r`` is ToMe's tokens
    merged per block; ``fuse`` EViT's extra token; ``seed`` the ``random`` method's generator.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "dynamicvit":
        return sparsify(model, keep_rate=keep_rate, prune_layers=prune_layers)
    check_supported(model)
    rate = check_keep_rate(keep_rate)
    depth = len(model.blocks)
    layers = check_prune_layers(default_prune_layers(depth) if prune_layers is None else prune_layers, depth)
    if int(r) < 0:
        raise ValueError(f"ToMe's r (tokens merged per block) must be >= 0, got {r}")
    model.__class__ = mixed_class(BaselineViTMixin, type(model), method.capitalize())
    model.method, model.fuse, model.tome_r = method, bool(fuse), int(r)
    model._prune_layers, model.keep_rate = layers, rate
    model._generator = torch.Generator().manual_seed(seed)
    return model


def _knob(model: nn.Module) -> str:
    return "tome_r" if getattr(model, "method", None) == "tome" else "keep_rate"


def set_budget(model: nn.Module, budget: float, dense_macs: int, tolerance: float = 0.02) -> float:
    """Tune a reduced model's knob (``keep_rate``, or ToMe's ``r``) so its MACs come closest to
    ``budget`` × ``dense_macs``; returns the fraction reached. Raises ``ValueError`` when the
    budget lies further than ``tolerance`` outside what the method can reach on this model."""
    from .flops import count_flops

    if not 0 < budget <= 1:
        raise ValueError(f"budget must be a fraction of the dense MACs in (0, 1], got {budget}")
    knob = _knob(model)
    method = getattr(model, "method", "dynamicvit")

    def fraction(value) -> float:
        setattr(model, knob, value)
        return count_flops(model).total / dense_macs

    if knob == "tome_r":
        lo, hi = 0, model.num_patches // 2  # more merging = fewer MACs
        values = {v: fraction(v) for v in (lo, hi)}
        while hi - lo > 1:
            mid = (lo + hi) // 2
            values[mid] = fraction(mid)
            lo, hi = (mid, hi) if values[mid] > budget else (lo, mid)
    else:
        lo, hi = 1e-3, 1.0  # higher keep rate = more MACs
        values = {v: fraction(v) for v in (lo, hi)}
        for _ in range(14):
            mid = (lo + hi) / 2
            values[mid] = fraction(mid)
            lo, hi = (mid, hi) if values[mid] <= budget else (lo, mid)
    reach = (min(values.values()), max(values.values()))
    if not reach[0] - tolerance <= budget <= reach[1] + tolerance:
        raise ValueError(
            f"budget {budget} is outside what {method} reaches on this model "
            f"({reach[0]:.3f} to {reach[1]:.3f} of the dense MACs)"
        )
    best = min(values, key=lambda v: (abs(values[v] - budget), -v if knob == "keep_rate" else v))
    return fraction(best)
