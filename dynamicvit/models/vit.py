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

import torch
from timm.models.vision_transformer import Attention, Block, VisionTransformer
from torch import nn

from dynamicvit.core.attention import masked_attention
from dynamicvit.core.attention_prior import attention_half, log_prior
from dynamicvit.core.interfaces import Family
from dynamicvit.core.learned_budget import build_budget_predictors
from dynamicvit.core.predictor import build_predictors, decide
from dynamicvit.core.tokens import (
    check_finite,
    forced_at,
    gather_tokens,
    iter_stages,
    patch_tokens,
    pools_patches,
    residual_attention,
    residual_mlp,
    restore_tokens,
    with_prefix,
)
from dynamicvit.models.adaptive import AdaptiveForwardMixin
from dynamicvit.models.merged_drops import MergedDropsMixin
from dynamicvit.models.reducer import (
    TokenReductionMixin,
    check_not_reduced,
    check_pools,
    install,
    reduction_counts,
)
from dynamicvit.models.registry import register_family
from dynamicvit.models.shared_prefix import SharedPrefixMixin

__all__ = [
    "FAMILY",
    "SUPPORTED_VIT",
    "DynamicViTMixin",
    "check_supported",
    "has_attention_prior",
    "reduction_layers",
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


def reduction_layers(model: VisionTransformer, keep_rate: float, prune_layers) -> tuple[float, list[int]]:
    """Checked ``(keep_rate, prune_layers)`` for a supported ViT (default layers: depth/4, /2, 3/4)."""
    check_supported(model)
    return reduction_counts(model, keep_rate, prune_layers)


class DynamicViTMixin(MergedDropsMixin, AdaptiveForwardMixin, SharedPrefixMixin, TokenReductionMixin):
    """Methods a sparsified ``VisionTransformer`` gains; mixed in front of its own class.

    ``decisions`` passed to ``forward`` force the stages' choices (train: masks (B, N); eval:
    indices (B, k_s) into the original grid, nested) instead of asking the predictors.
    """

    method = "dynamicvit"
    distills_tokens = True
    supports_adaptive = True
    supports_learned = True
    score_predictor: nn.ModuleList

    def add_budget_predictors(self) -> None:
        """The learned keep mode's :class:`~dynamicvit.core.learned_budget.BudgetPredictor` per stage (once),
        each starting at ρ of the tokens alive (the fixed mode's schedule)."""
        if not hasattr(self, "budget_predictor"):
            ref = next(self.score_predictor.parameters())
            budgets = build_budget_predictors(self.embed_dim, [self._keep_rate] * len(self._prune_layers))
            self.budget_predictor = budgets.to(device=ref.device, dtype=ref.dtype)

    def budget_at(self, s: int) -> nn.Module | None:
        """Stage ``s``'s budget predictor when the keep rule has one (the learned mode), else ``None``."""
        return self.keep_rule.budget_at(self, s)

    def forward_blocks(self, x, decisions, grid):
        if self.per_image and self.attention_prior:
            raise ValueError(f"the attention prior runs in the fixed keep mode, not the {self.keep_mode} mode")
        if self.merge_dropped:
            self._check_merging()
            return (self._forward_masked_merging if self.training else self._forward_pruned_merging)(x, decisions)
        if self.training:
            return self._forward_masked(x, decisions)
        if self.per_image:
            return self._forward_adaptive(x, decisions)
        return self._forward_pruned(x, decisions)

    def _check_merging(self) -> None:
        """Merging dropped tokens needs timm's own blocks and the fixed keep mode."""
        if type(self)._block is not DynamicViTMixin._block or self.per_image:
            raise ValueError(
                f"merge_dropped runs on plain timm ViT blocks in the fixed keep mode, not {type(self).__name__} "
                f"in the {self.keep_mode} mode"
            )

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
        counts = self.keep_counts(x.shape[1] - prefix)
        for s, blk in iter_stages(self.blocks, self._prune_layers):
            received = None
            if s is not None:
                if s == 0 and not torch.compiler.is_compiling() and self.prefix_is_fixed():
                    self._shared = (self._images, x)
                x, received = self._stage_attention(blk, x, policy)
                forced = forced_at(decisions, s)
                patches = patch_tokens(x, prefix)
                if trace is not None:
                    trace.append((patches, mask))
                mask = decide(
                    self.score_predictor[s],
                    patches,
                    counts[s],
                    True,
                    mask,
                    forced,
                    budget=self.budget_at(s),
                    rule=self.mask_rule,
                    prior=None if received is None else log_prior(received, mask),
                    explore=self.explore,
                )
                masks.append(mask)
                policy = torch.cat([mask.new_ones(mask.shape[0], prefix), mask], dim=1)
            x = residual_mlp(blk, x) if received is not None else self._block(blk, x, None, policy)
        return x, masks

    def _forward_pruned(self, x, decisions, trace: list | None = None):
        """Eval mode, fixed counts; ``trace`` collects each stage's (alive patch tokens, their grid indices)."""
        prefix = self.num_prefix_tokens
        n = x.shape[1] - prefix
        counts = self.keep_counts(n)
        index, kept = None, []
        for s, blk in iter_stages(self.blocks, self._prune_layers):
            received = None
            if s is not None:
                x, received = self._stage_attention(blk, x)
                patches = patch_tokens(x, prefix)
                if trace is not None:
                    trace.append((patches, index))
                forced = forced_at(decisions, s)
                prior = None if received is None else log_prior(received)
                keep = decide(self.score_predictor[s], patches, counts[s], False, index, forced, n, prior=prior)
                x = with_prefix(x, prefix, gather_tokens(patches, keep))
                index = keep if index is None else index.gather(1, keep)
                kept.append(index)
            x = residual_mlp(blk, x) if received is not None else self._block(blk, x, index)
        return x, kept

    @property
    def attention_prior(self) -> bool:
        """Whether each stage decides inside its block, after the attention, adding the attention prior to its
        predictor's scores (:mod:`dynamicvit.core.attention_prior`); :meth:`use_attention_prior` turns it on."""
        return self.score_predictor[0].prior_weight is not None

    def use_attention_prior(self) -> None:
        """Turn the attention prior on (once, before training or loading weights trained with it): each
        predictor gains its prior weight and starts from Top-K's ranking."""
        if type(self)._block is not DynamicViTMixin._block:
            raise ValueError(f"the attention prior runs on plain timm ViT blocks, not {type(self).__name__}")
        for predictor in self.score_predictor:
            predictor.use_attention_prior()

    def use_predictor_width(self, fraction: float) -> None:
        """Replace the fresh predictors by ones whose MLP is ``fraction`` of the model's width (a multiple of 8,
        at least 8): fewer MACs per scored token, spent on kept tokens under an equal-MACs budget. Once, before
        the attention prior, training or loading weights trained with it."""
        if self.attention_prior:
            raise ValueError("set the predictors' width before turning the attention prior on")
        ref = next(self.score_predictor.parameters())
        hidden = max(8, round(self.embed_dim * fraction / 8) * 8)
        rates = [self._keep_rate] * len(self.score_predictor)
        self.score_predictor = build_predictors(self.embed_dim, rates, hidden=hidden).to(ref.device, ref.dtype)

    def _stage_attention(
        self, blk: nn.Module, x: torch.Tensor, policy: torch.Tensor | None = None, size: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """With the attention prior, a stage block's attention branch and the attention each patch received in
        it (:func:`~dynamicvit.core.attention_prior.attention_half`; the stage decides before the MLP); without,
        ``(x, None)``: the stage decides before the block."""
        if not self.attention_prior:
            return x, None
        return attention_half(blk, x, self.num_prefix_tokens, policy, size)

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
        grid = self._check_input(x)
        if decisions is not None and len(decisions) != len(self._prune_layers):
            raise ValueError(f"expected {len(self._prune_layers)} forced decisions, got {len(decisions)}")
        trace: list = []
        if not self.training and self.per_image:  # packed: the forward traces its final rows itself
            _, out = self._forward_adaptive(self._embed(x), decisions, trace)
        else:
            run = self._forward_masked if self.training else self._forward_pruned
            tokens, out = run(self._embed(x), decisions, trace)
            trace.append((patch_tokens(tokens, self.num_prefix_tokens), out[-1] if out else None))
        full = self.norm(restore_tokens(trace, grid[0] * grid[1]))
        check_finite(x, full)
        return full, out


def has_attention_prior(reducer: object) -> bool:
    """Whether a reducing module can take the attention prior (DynamicViT on ViTs)."""
    return isinstance(reducer, DynamicViTMixin)


def check_supported(model: nn.Module) -> None:
    """Raise a clear error unless ``model`` is a plain timm ViT that token reduction supports."""
    check_not_reduced(model)
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


FAMILY = register_family(
    Family(
        name="ViT",
        supported=SUPPORTED_VIT,
        recognises=lambda model: isinstance(model, VisionTransformer),
        sparsify=sparsify_vit,
        ratio_weight=2.0,  # the paper's keep-ratio weight for plain ViTs
        backbone_lr_scale=0.01,  # backbone at 1/100 of the predictors' learning rate
        segments_tokens=True,
    )
)
