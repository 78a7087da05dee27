"""DynamicViT on timm's ``VisionTransformer`` (SPEC §2), applied in place like ToMe.

``sparsify(model)`` swaps the model's class for a subclass that adds one predictor per
pruning stage (``model.score_predictor``); the backbone and its weights are untouched.

The train/eval contract:

* **train mode** – every token stays in the batch; stage ``s`` produces a hard 0/1 mask
  ``(B, N)`` over the original patch grid (Gumbel straight-through, nested in the previous
  stage's mask) and later blocks use attention masked per SPEC (key ``j`` visible iff
  kept, a token always sees itself, softmax in float32).
* **eval mode** – stage ``s`` keeps the ``int(N * rho**s)`` best-scored patch tokens and
  really drops the rest; decisions are indices ``(B, k_s)`` into the original patch grid,
  in descending score order. Blocks run timm's own (fused) attention.

Prefix tokens (class, distillation, registers) are never scored and never dropped. With
the same weights and kept set both modes give the same class logits (tested).
"""

from __future__ import annotations

from itertools import pairwise
from typing import NamedTuple

import torch
from timm.layers import Attention
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from .predictor import build_predictors, check_keep_rate, gumbel_keep_mask, keep_counts

__all__ = [
    "SparseOutput",
    "TokenReductionMixin",
    "DynamicViTMixin",
    "sparsify_vit",
    "default_prune_layers",
    "masked_softmax",
]

SUPPORTED_VIT = (
    "timm VisionTransformer models with a class token and global_pool='token' built from "
    "timm Block/Attention (ViT, DeiT, distilled DeiT, register-token ViTs; any img/patch size)"
)


class SparseOutput(NamedTuple):
    """Result of ``model(x, return_decisions=True)``.

    ``decisions``: one tensor per stage – train mode: hard masks (B, N); eval mode: kept
    patch indices (B, k_s) into the original grid. ``features``: final normalised tokens
    (prefix tokens first; all N patches in train mode, the kept ones in eval mode).
    """

    logits: torch.Tensor
    decisions: list[torch.Tensor]
    features: torch.Tensor


def default_prune_layers(depth: int) -> list[int]:
    """Prune before blocks depth/4, depth/2, 3·depth/4 ([3, 6, 9] for 12 blocks)."""
    if depth < 4:
        raise ValueError(f"a {depth}-block model is too shallow for the default 3 stages; pass prune_layers")
    return [depth * i // 4 for i in (1, 2, 3)]


def check_prune_layers(prune_layers, depth: int) -> list[int]:
    """Validate prune layers: non-empty, strictly increasing, each in [1, depth - 1]."""
    try:
        layers = [int(v) for v in prune_layers]
    except (TypeError, ValueError):
        raise ValueError(f"prune_layers must be a list of block indices, got {prune_layers!r}") from None
    if not layers:
        raise ValueError("prune_layers must name at least one block")
    if any(v < 1 or v >= depth for v in layers):
        raise ValueError(f"prune_layers must lie in [1, {depth - 1}] for a {depth}-block model, got {layers}")
    if any(b <= a for a, b in pairwise(layers)):
        raise ValueError(f"prune_layers must be strictly increasing, got {layers}")
    return layers


def masked_softmax(logits: torch.Tensor, policy: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Softmax over keys weighted by ``policy`` (B, N) with the diagonal always on, in float32.

    ``logits`` is (B, H, N, N). Implements SPEC §2: ``w = exp(a - max) * G``, then
    ``(w + eps/N) / (sum w + eps)``; safe under fp16/bf16 autocast.
    """
    n = logits.shape[-1]
    keys = policy.float()[:, None, None, :]
    eye = torch.eye(n, dtype=torch.float32, device=logits.device)
    gate = keys + (1.0 - keys) * eye
    logits = logits.float()
    weights = (logits - logits.amax(dim=-1, keepdim=True)).exp() * gate
    return (weights + eps / n) / (weights.sum(dim=-1, keepdim=True) + eps)


def attention_qkv(attn: Attention, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v (B, H, N, d) of a timm ``Attention`` for tokens ``x`` (q/k norms applied)."""
    b, n, _ = x.shape
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    return attn.q_norm(q), attn.k_norm(k), v


def attention_output(attn: Attention, x: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
    """The rest of timm's ``Attention.forward`` after the heads (B, H, N, d): merge, gate, project."""
    b, _, n, _ = heads.shape
    out = attn.norm(heads.transpose(1, 2).reshape(b, n, attn.num_heads * attn.head_dim))
    if getattr(attn, "gate", None) is not None:
        out = out * attn.gate(x).sigmoid()
    return attn.proj_drop(attn.proj(out))


def _masked_attention(attn: Attention, x: torch.Tensor, policy: torch.Tensor) -> torch.Tensor:
    """timm ``Attention.forward`` with the DynamicViT policy mask (train mode)."""
    q, k, v = attention_qkv(attn, x)
    weights = attn.attn_drop(masked_softmax((q * attn.scale) @ k.transpose(-2, -1), policy))
    return attention_output(attn, x, weights.to(v.dtype) @ v)


def _masked_block(blk: Block, x: torch.Tensor, policy: torch.Tensor) -> torch.Tensor:
    x = x + blk.drop_path1(blk.ls1(_masked_attention(blk.attn, blk.norm1(x), policy)))
    return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))


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


def _patches(x: torch.Tensor, prefix: int) -> torch.Tensor:
    """Patch tokens as a contiguous copy: LayerNorm on the strided slice is twice as slow."""
    return x[:, prefix:].contiguous()


def _flat_rows(index: torch.Tensor, tokens_per_image: int) -> torch.Tensor:
    """Per-image token indices (B, k) as row indices (B·k,) into the batch flattened to (B·N, C)."""
    offsets = torch.arange(index.shape[0], device=index.device).unsqueeze(1) * tokens_per_image
    return (index + offsets).flatten()


def _gather_tokens(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``x[b, index[b]]`` for every image: (B, N, C), (B, k) → (B, k, C).

    One row ``index_select`` on the flattened batch: several times faster on CPU than ``gather`` with the
    index expanded over channels, which matters at batch 1 where pruning overhead is exposed.
    """
    b, n, c = x.shape
    return x.reshape(b * n, c).index_select(0, _flat_rows(index, n)).view(b, index.shape[1], c)


def _scatter_tokens(x: torch.Tensor, index: torch.Tensor, rows: torch.Tensor) -> None:
    """In place ``x[b, index[b]] = rows[b]`` for a contiguous ``x`` (B, N, C) (inverse of the gather)."""
    b, n, c = x.shape
    x.view(b * n, c).index_copy_(0, _flat_rows(index, n), rows.reshape(-1, c))


class TokenReductionMixin:
    """What every token-reducing ViT here shares (DynamicViT and the baselines): input checks,
    embedding, the keep schedule, and ``forward(x, decisions=None, return_decisions=False)``.

    Subclasses implement ``forward_sparse(x, decisions) -> (tokens, decisions)``.
    """

    _prune_layers: list[int]
    _keep_rate: float

    @property
    def keep_rate(self) -> float:
        """Per-stage keep ratio rho; stage s keeps int(N * rho**s) patches. Settable."""
        return self._keep_rate

    @keep_rate.setter
    def keep_rate(self, value: float) -> None:
        self._keep_rate = check_keep_rate(value)

    @property
    def prune_layers(self) -> list[int]:
        """Block indices before which tokens are reduced."""
        return list(self._prune_layers)

    @property
    def stage_of_block(self) -> dict[int, int]:
        """Block index → pruning stage that runs before it."""
        return {layer: s for s, layer in enumerate(self._prune_layers)}

    @property
    def num_patches(self) -> int:
        """Patch tokens at the model's configured image size."""
        return self.patch_embed.num_patches

    def keep_counts(self, num_patches: int | None = None) -> list[int]:
        """Patch tokens kept after each stage for an input of ``num_patches`` patches."""
        return keep_counts(num_patches or self.num_patches, self._keep_rate, len(self._prune_layers))

    def token_counts(self, num_patches: int | None = None) -> list[int]:
        """Tokens (besides class/distillation/register tokens) alive after each reduction step."""
        return self.keep_counts(num_patches)

    def _check_input(self, x: torch.Tensor) -> None:
        check_image_batch(x, in_channels(self))
        pe = self.patch_embed
        size, ph, pw = tuple(x.shape[-2:]), *pe.patch_size
        if not self.dynamic_img_size and pe.img_size is not None and size != tuple(pe.img_size):
            raise ValueError(
                f"input is {size[0]}x{size[1]} but the model was built for {pe.img_size[0]}x{pe.img_size[1]}; "
                "resize the input, or build the model with img_size=... or dynamic_img_size=True"
            )
        if not getattr(pe, "dynamic_img_pad", False) and (size[0] % ph or size[1] % pw):
            raise ValueError(f"input {size[0]}x{size[1]} is not divisible by the patch size {ph}x{pw}")

    def _check_finite(self, images: torch.Tensor, tokens: torch.Tensor) -> None:
        """Raise for NaN/Inf images. The class token attends to every patch, so a bad pixel reaches it:
        checking its B×C values is cheap; the full image is scanned only when it is not finite."""
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return
        if not torch.isfinite(tokens[:, 0]).all() and not torch.isfinite(images).all():
            raise ValueError("input contains NaN or Inf values")

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = self._pos_embed(x)
        x = self.patch_drop(x)
        return self.norm_pre(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_sparse(x)[0]

    def forward(
        self, x: torch.Tensor, decisions: list[torch.Tensor] | None = None, return_decisions: bool = False
    ) -> torch.Tensor | SparseOutput:
        """Class logits; with ``return_decisions`` a :class:`SparseOutput` (DDP-friendly)."""
        feats, out = self.forward_sparse(x, decisions)
        logits = self.forward_head(feats)
        return SparseOutput(logits, out, feats) if return_decisions else logits

    def forward_with_decisions(self, x: torch.Tensor, decisions: list[torch.Tensor] | None = None) -> SparseOutput:
        """Logits, per-stage decisions and final tokens (see the module docstring)."""
        return self(x, decisions=decisions, return_decisions=True)


class DynamicViTMixin(TokenReductionMixin):
    """Methods a sparsified ``VisionTransformer`` gains; mixed in front of its own class."""

    score_predictor: nn.ModuleList

    def forward_sparse(
        self, x: torch.Tensor, decisions: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Embed, run the blocks with pruning, final norm → (tokens, per-stage decisions).

        ``decisions`` forces the stages' choices (train: masks (B, N); eval: indices (B, k_s)
        into the original grid, nested) instead of asking the predictors.
        """
        self._check_input(x)
        if decisions is not None and len(decisions) != len(self._prune_layers):
            raise ValueError(f"expected {len(self._prune_layers)} forced decisions, got {len(decisions)}")
        tokens = self._embed(x)
        run = self._forward_masked if self.training else self._forward_pruned
        tokens, out = run(tokens, decisions)
        tokens = self.norm(tokens)
        self._check_finite(x, tokens)
        return tokens, out

    def _forward_masked(self, x, decisions):
        prefix = self.num_prefix_tokens
        b, n = x.shape[0], x.shape[1] - prefix
        stage_of = self.stage_of_block
        mask = x.new_ones(b, n, dtype=torch.float32)
        policy, masks = None, []
        for i, blk in enumerate(self.blocks):
            s = stage_of.get(i)
            if s is not None:
                if decisions is None:
                    log_probs = self.score_predictor[s](_patches(x, prefix), mask.unsqueeze(-1))
                    mask = gumbel_keep_mask(log_probs, mask)
                else:
                    mask = decisions[s].to(mask) * mask
                masks.append(mask)
                policy = torch.cat([mask.new_ones(b, prefix), mask], dim=1)
            x = blk(x) if policy is None else _masked_block(blk, x, policy)
        return x, masks

    def _forward_pruned(self, x, decisions):
        prefix = self.num_prefix_tokens
        n = x.shape[1] - prefix
        stage_of = self.stage_of_block
        counts = self.keep_counts(n)
        index, kept = None, []
        for i, blk in enumerate(self.blocks):
            s = stage_of.get(i)
            if s is not None:
                patches = _patches(x, prefix)
                if decisions is None:
                    keep = self.score_predictor[s].keep_score(patches).topk(counts[s], dim=1).indices
                else:
                    keep = _positions(index, decisions[s].to(x.device, torch.long), n)
                x = torch.cat([x[:, :prefix], _gather_tokens(patches, keep)], dim=1)
                index = keep if index is None else index.gather(1, keep)
                kept.append(index)
            x = blk(x)
        return x, kept


def _positions(index: torch.Tensor | None, forced: torch.Tensor, num_patches: int) -> torch.Tensor:
    """Map forced original-grid indices to positions among the current tokens ``index``."""
    if forced.dim() != 2 or forced.min() < 0 or forced.max() >= num_patches:
        raise ValueError(f"forced eval decisions must be (B, k) indices in [0, {num_patches})")
    if index is None:
        return forced
    table = torch.full((index.shape[0], num_patches), -1, dtype=torch.long, device=index.device)
    table.scatter_(1, index, torch.arange(index.shape[1], device=index.device).expand_as(index))
    pos = table.gather(1, forced)
    if (pos < 0).any():
        raise ValueError("forced eval decisions must be nested: a stage kept a token an earlier stage dropped")
    return pos


_MIXED_CLASSES: dict[tuple[type, type], type] = {}


def mixed_class(mixin: type, base: type, prefix: str) -> type:
    """``class <prefix><Base>(mixin, base)``, created once per pair (swapped in like ToMe)."""
    if (mixin, base) not in _MIXED_CLASSES:
        _MIXED_CLASSES[mixin, base] = type(f"{prefix}{base.__name__}", (mixin, base), {})
    return _MIXED_CLASSES[mixin, base]


def check_supported(model: nn.Module) -> None:
    """Raise a clear error unless ``model`` is a plain timm ViT that token reduction supports."""
    if isinstance(model, TokenReductionMixin):
        raise ValueError(f"model is already reduced ({type(model).__name__}); set model.keep_rate to change its budget")
    if not isinstance(model, VisionTransformer):
        raise TypeError(f"{type(model).__name__} is not supported; supported: {SUPPORTED_VIT}")
    problems = []
    if model.cls_token is None:
        problems.append("it has no class token")
    if model.global_pool != "token" or model.attn_pool is not None:
        problems.append(f"global_pool is {model.global_pool!r}, not 'token'")
    if not isinstance(model.patch_drop, nn.Identity):
        problems.append("patch dropout is enabled")
    if not all(isinstance(b, Block) and isinstance(b.attn, Attention) for b in model.blocks):
        problems.append("its blocks are not timm Block/Attention")
    if problems:
        raise TypeError(f"cannot sparsify {type(model).__name__}: {'; '.join(problems)}. Supported: {SUPPORTED_VIT}")


def sparsify_vit(model: VisionTransformer, keep_rate: float = 0.7, prune_layers=None) -> VisionTransformer:
    """Turn a timm ``VisionTransformer`` into DynamicViT in place and return it."""
    check_supported(model)
    rate = check_keep_rate(keep_rate)
    depth = len(model.blocks)
    layers = check_prune_layers(default_prune_layers(depth) if prune_layers is None else prune_layers, depth)
    ref = model.cls_token
    predictors = build_predictors(model.embed_dim, [rate] * len(layers))  # each keeps rho of those alive
    model.__class__ = mixed_class(DynamicViTMixin, type(model), "Dynamic")
    model.score_predictor = predictors.to(device=ref.device, dtype=ref.dtype)
    model._prune_layers = layers
    model.keep_rate = rate
    return model
