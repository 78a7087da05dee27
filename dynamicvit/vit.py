"""DynamicViT on timm's ``VisionTransformer``, applied in place like ToMe.

DynamicViT (Rao et al., NeurIPS 2021, arXiv 2106.02034; T-PAMI version arXiv 2207.01580).
``sparsify(model)`` swaps the model's class for a subclass that adds one predictor per
pruning stage (``model.score_predictor``); the backbone and its weights are untouched.
:class:`TokenReductionMixin` is what every token-reducing ViT here shares (DynamicViT and the
methods in :mod:`dynamicvit.methods`).

The train/eval contract:

* **train mode** – every token stays in the batch; stage ``s`` produces a hard 0/1 mask
  ``(B, N)`` over the original patch grid (Gumbel straight-through, nested in the previous
  stage's mask) and later blocks use the paper's attention masking ("End-to-end optimization
  with attention masking": key ``j``
  visible iff kept, a token always sees itself, softmax in float32).
* **eval mode** – stage ``s`` keeps the ``int(N * rho**s)`` best-scored patch tokens and
  really drops the rest; decisions are indices ``(B, k_s)`` into the original patch grid,
  in descending score order. Blocks run timm's own (fused) attention.

Prefix tokens (class, distillation, registers) are never scored and never dropped. With
the same weights and kept set both modes give the same class logits (tested).
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Attention, Block, VisionTransformer
from torch import nn

from .base import Family, TokenReducer
from .predictor import (
    build_predictors,
    check_keep_rate,
    check_prune_layers,
    cumulative_ratios,
    decide,
    default_prune_layers,
    keep_counts,
    threshold_keep,
)
from .tokens import (
    PackedTokens,
    SparseOutput,
    check_finite,
    check_image_batch,
    forced_at,
    forced_keep,
    gather_tokens,
    in_channels,
    iter_stages,
    masked_attention,
    mixed_class,
    packed_block,
    patch_tokens,
    per_image,
    residual_attention,
    residual_mlp,
    restore_tokens,
    with_prefix,
)

__all__ = [
    "FAMILY",
    "POOLS",
    "SUPPORTED_VIT",
    "DynamicViTMixin",
    "TokenReductionMixin",
    "check_pools",
    "check_supported",
    "pools_patches",
    "reduction_counts",
    "reduction_layers",
    "install",
    "sparsify_family",
    "sparsify_vit",
]

SUPPORTED_VIT = (
    "timm VisionTransformer models built from timm Block/Attention with a class-token, average, max or "
    "attention-pooling ('map') head (ViT, DeiT, distilled DeiT, register-token ViTs, DINOv2, SigLIP, gap ViTs; "
    "any img/patch size)"
)


def _masked_block(blk: Block, x: torch.Tensor, policy: torch.Tensor) -> torch.Tensor:
    """timm ``Block.forward`` with the DynamicViT policy mask on the attention (train mode)."""
    attn = blk.attn

    def heads(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return masked_attention(q, k, v, policy, attn.scale, attn.attn_drop)

    return residual_mlp(blk, residual_attention(blk, x, heads))


def _train_mode_differs(module: nn.Module) -> bool:
    """Whether ``module`` (not its children) computes differently in train mode than in eval mode."""
    if not module.training:
        return False
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return True
    rate = getattr(module, "p", None) if isinstance(module, nn.modules.dropout._DropoutNd) else None
    rate = rate or getattr(module, "drop_prob", None) or getattr(module, "prob", None)  # DropPath, PatchDropout
    return bool(rate)


def _continues(teacher: nn.Module) -> bool:
    """Whether ``teacher``'s features are timm's ViT ones: embedding, ``blocks`` in order, ``norm``."""
    return (
        isinstance(teacher, VisionTransformer) and type(teacher).forward_features is VisionTransformer.forward_features
    )


def reduction_layers(model: VisionTransformer, keep_rate: float, prune_layers) -> tuple[float, list[int]]:
    """Checked ``(keep_rate, prune_layers)`` for a supported ViT (default layers: depth/4, /2, 3/4)."""
    check_supported(model)
    return reduction_counts(model, keep_rate, prune_layers)


def reduction_counts(model: nn.Module, keep_rate: float, prune_layers) -> tuple[float, list[int]]:
    """Checked ``(keep_rate, prune_layers)`` for a model with ``blocks`` (default layers: depth/4, /2, 3/4)."""
    depth = len(model.blocks)
    layers = default_prune_layers(depth) if prune_layers is None else prune_layers
    return check_keep_rate(keep_rate), check_prune_layers(layers, depth)


class TokenReductionMixin(TokenReducer):
    """What every token-reducing ViT here shares (DynamicViT and the methods): input checks,
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
    def num_patches(self) -> int:
        """Patch tokens at the model's configured image size."""
        return self.patch_embed.num_patches

    def keep_counts(self, num_patches: int | None = None) -> list[int]:
        """Patch tokens kept after each stage for an input of ``num_patches`` patches."""
        return keep_counts(num_patches or self.num_patches, self._keep_rate, len(self._prune_layers))

    def keep_targets(self) -> list[float]:
        return cumulative_ratios(self._keep_rate, len(self._prune_layers))

    def token_counts(self, num_patches: int | None = None) -> list[int]:
        """Tokens (besides class/distillation/register tokens) alive after each reduction step."""
        return self.keep_counts(num_patches)

    def grid_for(self, image_size: tuple[int, int]) -> tuple[int, int]:
        return self.patch_embed.dynamic_feat_size(image_size)

    def _check_input(self, x: torch.Tensor) -> tuple[int, int]:
        """Clear errors for inputs the model cannot take; returns the patch grid of ``x``."""
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
        grid = self.grid_for(size)
        if not torch.compiler.is_compiling():  # export/compile: no module state changes in the graph
            self.last_grid = grid
        return grid

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        x = self._pos_embed(x)
        x = self.patch_drop(x)
        return self.norm_pre(x)

    def forward_sparse(
        self, x: torch.Tensor, decisions: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Check, embed, run :meth:`forward_blocks`, final norm → (tokens, per-stage decisions)."""
        grid = self._check_input(x)
        if decisions is not None and len(decisions) != len(self._prune_layers):
            raise ValueError(f"expected {len(self._prune_layers)} forced decisions, got {len(decisions)}")
        tokens, out = self.forward_blocks(self._embed(x), decisions, grid)
        tokens = self.norm(tokens)
        check_finite(x, tokens[:, 0])  # the class token attends to every patch: a bad pixel reaches it
        return tokens, out

    def forward_blocks(
        self, x: torch.Tensor, decisions: list[torch.Tensor] | None, grid: tuple[int, int]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Embedded tokens of a ``grid`` of patches through the blocks with the method's reductions
        → (tokens, decisions)."""
        raise NotImplementedError

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_sparse(x)[0]

    def forward(
        self, x: torch.Tensor, decisions: list[torch.Tensor] | None = None, return_decisions: bool = False
    ) -> torch.Tensor | SparseOutput:
        """Class logits; with ``return_decisions`` a :class:`SparseOutput` (DDP-friendly)."""
        feats, out = self.forward_sparse(x, decisions)
        logits = self.head_logits(feats, out)
        return SparseOutput(logits, out, feats) if return_decisions else logits

    def head_logits(self, feats: torch.Tensor, decisions: list[torch.Tensor]) -> torch.Tensor:
        """Logits of the final tokens (the backbone's ``forward_head``)."""
        return self.forward_head(feats)

    def forward_with_decisions(self, x: torch.Tensor, decisions: list[torch.Tensor] | None = None) -> SparseOutput:
        """Logits, per-stage decisions and final tokens (see the module docstring)."""
        return self(x, decisions=decisions, return_decisions=True)


class DynamicViTMixin(TokenReductionMixin):
    """Methods a sparsified ``VisionTransformer`` gains; mixed in front of its own class.

    ``decisions`` passed to ``forward`` force the stages' choices (train: masks (B, N); eval:
    indices (B, k_s) into the original grid, nested) instead of asking the predictors.
    """

    method = "dynamicvit"
    distills_tokens = True
    supports_adaptive = True
    shares_prefix = True  # the teacher can resume from the tokens before the first stage (timm ViT blocks)
    _images: weakref.ref  # the images of the latest train-mode forward (set by _check_input)
    _shared: tuple[weakref.ref, torch.Tensor] | None = None  # (those images, tokens before the first stage)
    _prefix_stamp: list | None = None
    _prefix_same = False
    _prefix_frozen = False  # freeze_prefix() was called
    score_predictor: nn.ModuleList
    last_keep_scores: list[tuple[torch.Tensor, torch.Tensor]] = []

    def _check_input(self, x: torch.Tensor) -> tuple[int, int]:
        grid = super()._check_input(x)
        if self.training and not torch.compiler.is_compiling():  # every train forward passes here
            self._shared, self._images = None, weakref.ref(x)  # which images the shared tokens are of
        return grid

    def forward_blocks(self, x, decisions, grid):
        if self.training:
            return self._forward_masked(x, decisions)
        if self.keep_mode == "adaptive":
            return self._forward_adaptive(x, decisions)
        return self._forward_pruned(x, decisions)

    def head_logits(self, feats: torch.Tensor, decisions: list[torch.Tensor]) -> torch.Tensor:
        """A head that reads patch tokens sees, in train mode, only the tokens the last mask keeps – the
        tokens eval mode keeps: LV-ViT's token labels (``head_reads_tokens``) and pooled heads (average,
        max or attention pooling; :meth:`pool_kept`)."""
        if self.training and decisions and getattr(self, "head_reads_tokens", False):
            return self.forward_head(feats, token_mask=decisions[-1] > 0.5)
        if self.training and decisions and pools_patches(self):
            return self.head(self.head_drop(self.fc_norm(self.pool_kept(feats, decisions[-1]))))
        return self.forward_head(feats)

    def pool_kept(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """timm's ``pool`` over the tokens a train-mode ``mask`` (B, N) keeps (prefix tokens as timm's
        ``pool_include_prefix`` says): the same pooled features as eval mode on the kept tokens. The
        average weights tokens by the straight-through mask, so its gradient reaches the predictors."""
        prefix = self.num_prefix_tokens
        weight = mask.to(x.dtype)
        # a Gumbel mask can keep no patch of an image (eval mode always keeps one): it then pools over all
        weight = torch.where(weight.sum(1, keepdim=True) > 0, weight, torch.ones_like(weight))
        if self.pool_include_prefix:
            weight = torch.cat([weight.new_ones(weight.shape[0], prefix), weight], dim=1)
        else:
            x = x[:, prefix:]
        if self.attn_pool is not None:
            bias = torch.zeros_like(weight).masked_fill(weight < 0.5, -torch.inf)
            return self.attn_pool(x, attn_mask=bias[:, None, None, :])
        avg = (x * weight.unsqueeze(-1)).sum(1) / weight.sum(1, keepdim=True)
        top = x.masked_fill(weight.unsqueeze(-1) < 0.5, -torch.inf).amax(1)
        return {"avg": avg, "max": top, "avgmax": 0.5 * (avg + top)}[self.global_pool]

    def _forward_masked(self, x, decisions, trace: list | None = None):
        """Train mode; ``trace`` (a list) collects each stage's (patch tokens, mask before it) for
        :func:`restore_tokens`."""
        prefix = self.num_prefix_tokens
        mask, policy, masks = None, None, []
        for s, blk in iter_stages(self.blocks, self._prune_layers):
            if s == 0 and not torch.compiler.is_compiling() and self._prefix_is_fixed():
                self._shared = (self._images, x)
            if s is not None:
                forced = forced_at(decisions, s)
                patches = patch_tokens(x, prefix)
                if trace is not None:
                    trace.append((patches, mask))
                mask = decide(self.score_predictor[s], patches, 0, True, mask, forced)
                masks.append(mask)
                policy = torch.cat([mask.new_ones(mask.shape[0], prefix), mask], dim=1)
            x = self._block(blk, x, None, policy)
        return x, masks

    # -- the dense prefix, shared with the teacher -------------------------------------------------
    def _prefix_modules(self, model: nn.Module | None = None) -> list[nn.Module]:
        """What runs before the first pruning stage in this model (or in the dense ``model`` it came from)."""
        model = self if model is None else model
        first = self._prune_layers[0]
        return [model.patch_embed, model.pos_drop, model.patch_drop, model.norm_pre, *model.blocks[:first]]

    def prefix_state(self, model: nn.Module | None = None) -> list[torch.Tensor]:
        """The tensors that compute the tokens entering the first pruning stage of this model (or of the
        dense ``model`` it came from): class/register/position tokens, patch embedding, the blocks before."""
        model = self if model is None else model
        tokens = [getattr(model, n, None) for n in ("cls_token", "dist_token", "reg_token", "pos_embed")]
        weights = [t for m in self._prefix_modules(model) for t in (*m.parameters(), *m.buffers())]
        return [t for t in tokens if isinstance(t, torch.Tensor)] + weights

    def freeze_prefix(self) -> None:
        """Never train what runs before the first pruning stage: no gradients for its weights, its batch
        norms (a convolutional stem's) always in eval mode. The teacher then reuses its tokens."""
        for t in self.prefix_state():
            t.requires_grad_(False)
        self._prefix_frozen = True
        self.train(self.training)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self._prefix_frozen:
            for module in self._prefix_modules():
                module.apply(lambda m: m.eval() if isinstance(m, nn.modules.batchnorm._BatchNorm) else None)
        return self

    def _prefix_is_fixed(self) -> bool:
        """Whether the layers before the first pruning stage compute, in this train-mode forward, exactly
        what they compute in eval mode with weights that cannot change: no weight of theirs needs a gradient,
        no dropout, drop-path, patch dropout or batch statistics."""
        if not self.shares_prefix:
            return False
        random = any(_train_mode_differs(m) for module in self._prefix_modules() for m in module.modules())
        return not random and not any(t.requires_grad for t in self.prefix_state())

    def teacher_features(self, teacher: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """``teacher.forward_features(images)`` for the dense ``teacher`` this model was sparsified from,
        reusing the tokens this model's last train-mode forward computed before its first pruning stage
        when that part is frozen and deterministic and equal to the teacher's (checked): those layers
        then run once for both (cheaper calibration and frozen-backbone epochs)."""
        shared, self._shared = self._shared, None
        if shared is not None and shared[0]() is images and _continues(teacher) and self._same_prefix(teacher):
            return teacher.norm(teacher.blocks[self._prune_layers[0] :](shared[1]))
        return teacher.forward_features(images)

    def _same_prefix(self, teacher: nn.Module) -> bool:
        """Whether ``teacher``'s prefix weights equal this model's; rechecked only after either changed."""
        mine, theirs = self.prefix_state(), self.prefix_state(teacher)
        stamp = [(t.data_ptr(), t._version) for t in (*mine, *theirs)]
        if self._prefix_stamp != stamp:
            same = len(mine) == len(theirs) and all(
                a.shape == b.shape and torch.equal(a, b) for a, b in zip(mine, theirs, strict=True)
            )
            self._prefix_stamp, self._prefix_same = stamp, same
        return self._prefix_same

    def _forward_pruned(self, x, decisions, trace: list | None = None):
        """Eval mode, fixed counts; ``trace`` collects each stage's (alive patch tokens, their grid indices)."""
        prefix = self.num_prefix_tokens
        n = x.shape[1] - prefix
        counts = self.keep_counts(n)
        index, kept = None, []
        for s, blk in iter_stages(self.blocks, self._prune_layers):
            if s is not None:
                patches = patch_tokens(x, prefix)
                if trace is not None:
                    trace.append((patches, index))
                forced = forced_at(decisions, s)
                keep = decide(self.score_predictor[s], patches, counts[s], False, index, forced, n)
                x = with_prefix(x, prefix, gather_tokens(patches, keep))
                index = keep if index is None else index.gather(1, keep)
                kept.append(index)
            x = self._block(blk, x, index)
        return x, kept

    def _block(
        self, blk: nn.Module, x: torch.Tensor, index: torch.Tensor | None, policy: torch.Tensor | None = None
    ) -> torch.Tensor:
        """One block on the tokens alive (``index``: their grid positions (B, n), ``None`` for all), in train
        mode under the attention ``policy`` (B, prefix + N). Families whose blocks need the positions
        (rotary embeddings) override it."""
        return blk(x) if policy is None else _masked_block(blk, x, policy)

    def forward_restored(
        self, x: torch.Tensor, decisions: list[torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """All patch tokens, normalised, at their grid places (B, N, C) – a kept token's final features, a
        dropped token's from the stage that dropped it (:func:`restore_tokens`) – and the decisions: a
        pruned ViT as a dense-prediction backbone. Same kept set ⇒ same map in train and eval mode."""
        if not self.training and self.keep_mode == "adaptive":
            raise TypeError("token restoration runs in the fixed keep mode (adaptive mode packs the batch)")
        grid = self._check_input(x)
        if decisions is not None and len(decisions) != len(self._prune_layers):
            raise ValueError(f"expected {len(self._prune_layers)} forced decisions, got {len(decisions)}")
        trace: list = []
        run = self._forward_masked if self.training else self._forward_pruned
        tokens, out = run(self._embed(x), decisions, trace)
        trace.append((patch_tokens(tokens, self.num_prefix_tokens), out[-1] if out else None))
        full = self.norm(restore_tokens(trace, grid[0] * grid[1]))
        check_finite(x, full)
        return full, out

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

    def forward_padded(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the adaptive mode executed the padded way (the benchmarks' comparison for packing):
        the same per-image kept tokens, each image padded to the batch's largest count, attention masked,
        the padding computed."""
        x = self._embed(x)
        prefix, valid = self.num_prefix_tokens, None
        for s, blk in iter_stages(self.blocks, self._prune_layers):
            if s is not None:
                patches = patch_tokens(x, prefix)
                b, n, _ = patches.shape
                policy = None if valid is None else valid.unsqueeze(-1)
                log_probs = self.score_predictor[s](patches, policy)
                score = log_probs[..., 0] - log_probs[..., 1]
                if valid is not None:
                    score = score.masked_fill(~valid, -torch.inf)
                seg = torch.arange(b, device=x.device).repeat_interleave(n)
                keep = threshold_keep(score.flatten(), seg, b, self.thresholds[s]).view(b, n)
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
        return self.forward_head(self.norm(x))

    def forward_limit(self, x: torch.Tensor, score: bool = False) -> torch.Tensor:
        """Logits at this model's token budget without its selection cost: the first ``k_s`` tokens
        are sliced, no predictor, no gather (the benchmarks' *limit*). With ``score`` the predictors
        still score the patch tokens at each stage (scores unused)."""
        x = self._embed(x)
        prefix = self.num_prefix_tokens
        counts = self.keep_counts(x.shape[1] - prefix)
        index = None
        for s, blk in iter_stages(self.blocks, self._prune_layers):
            if s is not None:
                if score:
                    self.score_predictor[s].keep_score(patch_tokens(x, prefix))
                x = x[:, : prefix + counts[s]]
                index = torch.arange(counts[s], device=x.device).expand(x.shape[0], -1)
            x = self._block(blk, x, index)
        return self.forward_head(self.norm(x))


POOLS = ("avg", "max", "avgmax")


def pools_patches(model: VisionTransformer) -> bool:
    """Whether the head pools patch tokens (average, max, attention pooling) instead of reading the class token."""
    return model.attn_pool is not None or model.global_pool in POOLS


def check_pools(model: nn.Module) -> list[str]:
    """What is wrong with a ViT's head for token reduction (nothing: an empty list)."""
    if model.global_pool == "token" and model.cls_token is None:
        return ["global_pool 'token' without a class token"]
    if model.attn_pool is None and model.global_pool not in ("token", "", *POOLS):
        return [f"global_pool is {model.global_pool!r} (supported: 'token', 'avg', 'max', 'avgmax', 'map')"]
    return []


def check_supported(model: nn.Module) -> None:
    """Raise a clear error unless ``model`` is a plain timm ViT that token reduction supports."""
    if isinstance(model, TokenReductionMixin):
        raise ValueError(f"model is already reduced ({type(model).__name__}); set model.keep_rate to change its budget")
    if not isinstance(model, VisionTransformer):
        raise TypeError(f"{type(model).__name__} is not supported; supported: {SUPPORTED_VIT}")
    problems = check_pools(model)
    if not isinstance(model.patch_drop, nn.Identity):
        problems.append("patch dropout is enabled")
    if not all(isinstance(b, Block) and isinstance(b.attn, Attention) for b in model.blocks):
        problems.append("its blocks are not timm Block/Attention")
    if problems:
        raise TypeError(f"cannot sparsify {type(model).__name__}: {'; '.join(problems)}. Supported: {SUPPORTED_VIT}")


def sparsify_vit(model: VisionTransformer, keep_rate: float = 0.7, prune_layers=None) -> VisionTransformer:
    """Turn a timm ``VisionTransformer`` into DynamicViT in place and return it."""
    rate, layers = reduction_layers(model, keep_rate, prune_layers)
    return install(model, DynamicViTMixin, rate, layers)


def sparsify_family(
    model: nn.Module, mixin: type, problems: list[str], supported: str, keep_rate: float, prune_layers
) -> nn.Module:
    """DynamicViT for a ViT-like family (EVA, BEiT): refuse an already reduced model or one with
    ``problems`` (naming what the family ``supported``), then :func:`install` ``mixin``."""
    if isinstance(model, TokenReductionMixin):
        raise ValueError(f"model is already reduced ({type(model).__name__}); set model.keep_rate to change its budget")
    if problems:
        raise TypeError(f"cannot sparsify {type(model).__name__}: {'; '.join(problems)}. Supported: {supported}")
    return install(model, mixin, *reduction_counts(model, keep_rate, prune_layers))


def install(model: nn.Module, mixin: type, rate: float, layers: list[int]) -> nn.Module:
    """Swap ``mixin`` into ``model``'s class and add one predictor per pruning stage (in place)."""
    ref = next(model.parameters())
    predictors = build_predictors(model.embed_dim, [rate] * len(layers))  # each keeps rho of those alive
    model.__class__ = mixed_class(mixin, type(model), "Dynamic")
    model.score_predictor = predictors.to(device=ref.device, dtype=ref.dtype)
    model._prune_layers = layers
    model.keep_rate = rate
    return model


FAMILY = Family(
    name="ViT",
    supported=SUPPORTED_VIT,
    recognises=lambda model: isinstance(model, VisionTransformer),
    sparsify=sparsify_vit,
    ratio_weight=2.0,  # the paper's keep-ratio weight for plain ViTs
    backbone_lr_scale=0.01,  # backbone at 1/100 of the predictors' learning rate
)
