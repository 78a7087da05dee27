"""Token-importance predictor, the selection rule and the keep schedule.

DynamicViT (Rao et al., NeurIPS 2021, arXiv 2106.02034), "Hierarchical token sparsification
with prediction modules": the predictor scores tokens from their own features (local half) and
a summary of the tokens still alive (global half); output channel 0 is the log-probability of
"keep". Module names
(``in_conv``, ``out_conv``) follow the authors' release so their checkpoints load unchanged.

:func:`decide` is the one place that turns scores into a stage's decision (train: hard Gumbel
straight-through mask; eval: top-k), for plain ViTs and ConvNeXt/Swin alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dynamicvit.core.learned_budget import BudgetPredictor, image_means, packed_means, soft_topk_mask
from dynamicvit.core.tokens import forced_positions

__all__ = [
    "TokenPredictor",
    "build_predictors",
    "check_keep_rate",
    "random_decisions",
    "random_selector",
    "check_prune_layers",
    "cumulative_ratios",
    "decide",
    "default_prune_layers",
    "gumbel_keep_mask",
    "keep_count",
    "keep_counts",
    "threshold_keep",
]


def check_keep_rate(keep_rate: float) -> float:
    """Return ``keep_rate`` as float, or raise ``ValueError`` if it is outside (0, 1]."""
    try:
        rate = float(keep_rate)
    except (TypeError, ValueError):
        raise ValueError(f"keep_rate must be a number in (0, 1], got {keep_rate!r}") from None
    if not 0.0 < rate <= 1.0 or math.isnan(rate):
        raise ValueError(f"keep_rate must be in (0, 1], got {keep_rate!r}")
    return rate


def keep_count(num_tokens: int, ratio: float) -> int:
    """``int(N * ratio)``, at least 1. A tiny epsilon guards against float round-down
    (``0.7**2 * 100`` is 48.999…, meant 49)."""
    return max(1, int(num_tokens * ratio + 1e-6))


def cumulative_ratios(keep_rate: float, num_stages: int) -> list[float]:
    """The paper's progressive schedule for plain ViTs: stage s keeps ``rho**s`` of the input tokens."""
    rate = check_keep_rate(keep_rate)
    return [rate**s for s in range(1, num_stages + 1)]


def keep_counts(num_tokens: int, keep_rate: float, num_stages: int) -> list[int]:
    """Tokens kept after each stage: ``int(N * rho**s)`` for s = 1..num_stages, at least 1.

    Args:
        num_tokens: patch tokens before the first stage.
        keep_rate: ρ in (0, 1].
        num_stages: pruning stages.

    Returns:
        The kept count after each stage.
    """
    return [keep_count(num_tokens, r) for r in cumulative_ratios(keep_rate, num_stages)]


def default_prune_layers(depth: int) -> list[int]:
    """Reduce before blocks depth/4, depth/2, 3·depth/4 ([3, 6, 9] for 12 blocks)."""
    if depth < 4:
        raise ValueError(f"a {depth}-block model is too shallow for the default 3 stages; pass prune_layers")
    return [depth * i // 4 for i in (1, 2, 3)]


def check_prune_layers(prune_layers, depth: int, lowest: int = 1) -> list[int]:
    """Validate prune layers: non-empty, strictly increasing, each in [lowest, depth - 1]."""
    try:
        layers = [int(v) for v in prune_layers]
    except (TypeError, ValueError):
        raise ValueError(f"prune_layers must be a list of block indices, got {prune_layers!r}") from None
    if not layers:
        raise ValueError("prune_layers must name at least one block")
    if any(v < lowest or v >= depth for v in layers):
        raise ValueError(f"prune_layers must lie in [{lowest}, {depth - 1}] for a {depth}-block model, got {layers}")
    if any(b <= a for a, b in zip(layers, layers[1:], strict=False)):
        raise ValueError(f"prune_layers must be strictly increasing, got {layers}")
    return layers


class TokenPredictor(nn.Module):
    """Scores tokens ``(B, N, C)`` → log-probabilities ``(B, N, 2)``; channel 0 means keep.

    The paper's predictor (arXiv 2106.02034, §3.2): an MLP on each token's local features
    concatenated with the mean of the alive tokens' global features.

    Args:
        embed_dim: the tokens' channels.
        eps: the LayerNorm's epsilon (the release uses 1e-5 for ViTs and Swin, 1e-6 for ConvNeXt).
        hidden: the MLP's width (even, at least 8; default ``embed_dim``, the paper's). A narrower one costs
            fewer MACs per token, which an equal-MACs budget spends on kept tokens instead.
    """

    def __init__(self, embed_dim: int, eps: float = 1e-5, hidden: int | None = None) -> None:
        super().__init__()
        hidden = embed_dim if hidden is None else hidden
        if hidden < 8 or hidden % 2:
            raise ValueError(f"TokenPredictor needs an even width >= 8, got {hidden}")
        self.in_conv = nn.Sequential(nn.LayerNorm(embed_dim, eps=eps), nn.Linear(embed_dim, hidden), nn.GELU())
        self.out_conv = nn.Sequential(
            nn.Linear(hidden, hidden // 2),
            nn.GELU(),
            nn.Linear(hidden // 2, hidden // 4),
            nn.GELU(),
            nn.Linear(hidden // 4, 2),
            nn.LogSoftmax(dim=-1),
        )
        self.register_parameter("prior_weight", None)  # the attention prior's weight (use_attention_prior)

    def forward(
        self,
        x: torch.Tensor,
        policy: torch.Tensor | None = None,
        score_only: bool = False,
        prior: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``policy`` (B, N, 1) marks alive tokens (1) for the global mean; None means all alive.
        ``score_only`` returns :meth:`keep_score`'s (B, N) scores instead of the log-probabilities.
        ``prior`` (B, N): the attention prior's ``log(n · a)`` (:mod:`dynamicvit.core.attention_prior`),
        added to the keep log-odds times :attr:`prior_weight`."""
        if score_only:
            score = self._score(x)
            return score if prior is None else score + self._weighted(prior)
        if prior is not None:
            odds = self._odds(x, policy) + self._weighted(prior)
            return torch.stack([F.logsigmoid(odds), F.logsigmoid(-odds)], dim=-1)
        x = self.in_conv(x)
        half = x.shape[-1] // 2
        local_x, global_x = x[..., :half], x[..., half:]
        # mean over the alive tokens (all of them without a policy)
        global_x = image_means(global_x, None if policy is None else policy.squeeze(-1)).unsqueeze(1)
        # out_conv[0] on cat(local, global broadcast): the global half is the same for every
        # token, so project it once per image instead of once per token.
        fc = self.out_conv[0]
        x = F.linear(local_x, fc.weight[:, :half]) + F.linear(global_x, fc.weight[:, half:], fc.bias)
        for layer in list(self.out_conv)[1:]:
            x = layer(x)
        return x

    def _odds(self, x: torch.Tensor, policy: torch.Tensor | None) -> torch.Tensor:
        """Keep log-odds (B, N) of :meth:`forward`'s log-probabilities."""
        log_probs = self(x, policy)
        return log_probs[..., 0] - log_probs[..., 1]

    def _weighted(self, prior: torch.Tensor) -> torch.Tensor:
        if self.prior_weight is None:
            raise ValueError("this predictor has no attention prior; call use_attention_prior() first")
        return self.prior_weight.to(prior.dtype) * prior

    def use_attention_prior(self, weight: float = 1.0) -> None:
        """Add the attention prior's learned weight (starting at ``weight``) and zero the last layer's
        weights: the keep log-odds start as the prior alone (plus the keep probability's bias), so the
        stage starts with Top-K's ranking and training adds what the predictor sees that attention misses.
        Called once, on a fresh predictor; a checkpoint's weights are loaded after it."""
        if self.prior_weight is None:
            ref = self.out_conv[-2].weight
            self.prior_weight = nn.Parameter(torch.tensor(float(weight), device=ref.device, dtype=ref.dtype))
            with torch.no_grad():
                ref.zero_()

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`keep_score`'s computation: the same layers as :meth:`forward` in a dozen 2-D
        ops and no submodule calls, because it runs in every inference and at batch 1 the
        per-op overhead is a visible part of the latency. (The activations are exact GELUs.)"""
        b, n, c = x.shape
        x = self._token_features(x.reshape(b * n, c))
        width, fc_mix = x.shape[-1], self.out_conv[0]
        half = width // 2
        global_x = F.linear(x.view(b, n, width)[..., half:].mean(dim=1), fc_mix.weight[:, half:], fc_mix.bias)
        x = (x[:, :half] @ fc_mix.weight[:, :half].t()).view(b, n, -1).add_(global_x.unsqueeze(1))
        return self._keep_logit(x.view(b * n, -1)).view(b, n)

    def keep_score_packed(self, x: torch.Tensor, seg: torch.Tensor, num_images: int) -> torch.Tensor:
        """:meth:`keep_score` of packed tokens ``x`` (T, C) of ``num_images`` images (``seg``: each row's
        image): the global half is the mean over each image's own rows."""
        x = self._token_features(x)
        half, fc_mix = x.shape[-1] // 2, self.out_conv[0]
        global_x = F.linear(packed_means(x[:, half:], seg, num_images), fc_mix.weight[:, half:], fc_mix.bias)
        x = (x[:, :half] @ fc_mix.weight[:, :half].t()).add_(global_x.index_select(0, seg))
        return self._keep_logit(x).view(-1)

    def _token_features(self, x: torch.Tensor) -> torch.Tensor:
        """``in_conv`` on tokens (R, C): LayerNorm, Linear, GELU."""
        norm, fc_in, _ = self.in_conv
        x = F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)
        return F.gelu(torch.addmm(fc_in.bias, x, fc_in.weight.t()))

    def _keep_logit(self, x: torch.Tensor) -> torch.Tensor:
        """The rest of ``out_conv`` after its first projection (R, width/2) → keep log-odds (R, 1): the
        difference of the two output logits, so no softmax is needed."""
        _, _, fc_mid, _, fc_out, _ = self.out_conv
        x = F.gelu(torch.addmm(fc_mid.bias, F.gelu(x), fc_mid.weight.t()))
        w, bias = fc_out.weight[:1] - fc_out.weight[1:], fc_out.bias[:1] - fc_out.bias[1:]
        return torch.addmm(bias.to(x.dtype), x, w.t().to(x.dtype))

    def init_keep_probability(self, probability: float) -> None:
        """Set the last layer's bias so a fresh predictor keeps tokens with ``probability``.

        With the release's zero bias every token starts at 50%, so nested stages start at
        50/25/12.5% kept whatever the target, and AdamW needs thousands of updates to move the
        bias to the budget; a short fine-tune then trains at the wrong budget. Starting at the
        target removes that mismatch (a deviation from the release; scores still start uniform).
        """
        p = min(max(float(probability), 1e-3), 1 - 1e-3)
        with torch.no_grad():
            self.out_conv[-2].bias.copy_(torch.tensor([math.log(p), math.log(1 - p)]))

    def keep_score(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """Eval-time keep score (B, N), every token alive: the log-odds of "keep",
        ``log p_keep - log p_drop`` (plus the weighted attention ``prior``, when given). It ranks tokens
        exactly as the keep log-probability does (both grow with the logit difference) but needs one
        output instead of two and no softmax."""
        return self(x, score_only=True, prior=prior)


def decide(
    predictor: TokenPredictor,
    tokens: torch.Tensor,
    count: int,
    training: bool,
    previous: torch.Tensor | None = None,
    forced: torch.Tensor | None = None,
    num_tokens: int | None = None,
    budget: BudgetPredictor | None = None,
    rule: Any = None,
    prior: torch.Tensor | None = None,
    explore: bool = True,
) -> torch.Tensor:
    """One stage's decision over ``tokens`` (B, n, C), the alive tokens of a grid of ``num_tokens``.

    * train: a hard 0/1 keep mask (B, N) over the grid (Gumbel straight-through), nested in
      ``previous`` (B, N), the alive mask (``None``: every token alive); the predictor's global half
      averages over the alive tokens. ``forced`` masks replace the predictor (and are nested too).
    * eval: positions (B, ``count``) among ``tokens`` of the best-scored ones, in descending score.
      ``previous`` (B, n) holds the alive tokens' grid indices (``None``: ``tokens`` is the whole grid);
      ``forced`` grid indices (B, k) are mapped to positions (and checked to be nested).

    The train mask is ``rule.mask(log_probs, alive, count)`` (a :class:`~dynamicvit.core.keep.MaskRule`; ``None``:
    the paper's Gumbel rule). With a ``budget`` predictor (the learned keep mode) the train mask keeps each
    image's own count of its best tokens (:func:`~dynamicvit.core.learned_budget.soft_topk_mask`) instead of
    a Gumbel choice per token. ``prior`` (train: (B, N); eval: (B, n)) is the attention prior's ``log(n · a)``
    of the tokens (:mod:`dynamicvit.core.attention_prior`), for a predictor that uses it. ``explore`` is passed
    to the rule (its exploration noise on or off).
    """
    if training:
        alive = previous if previous is not None else tokens.new_ones(tokens.shape[:2], dtype=torch.float32)
        if forced is not None:
            return forced.to(alive) * alive
        log_probs = predictor(tokens, alive.unsqueeze(-1), prior=prior)
        if budget is not None:
            ratio = budget(image_means(tokens, alive))
            return soft_topk_mask(log_probs[..., 0] - log_probs[..., 1], alive, ratio).to(alive.dtype)
        return gumbel_keep_mask(log_probs, alive) if rule is None else rule.mask(log_probs, alive, count, explore)
    if forced is not None:
        return forced_positions(previous, forced.to(tokens.device, torch.long), num_tokens or tokens.shape[1])
    return predictor.keep_score(tokens, prior).topk(count, dim=1).indices


def threshold_keep(score: torch.Tensor, seg: torch.Tensor, num_images: int, threshold: float) -> torch.Tensor:
    """The adaptive rule: keep the tokens whose keep probability exceeds ``threshold``, and each image's
    best-scored token whatever its probability. ``score`` (T,) are keep log-odds of packed tokens of
    ``num_images`` images (``seg``: each token's image); returns a (T,) bool mask."""
    keep = score > math.log(threshold / (1 - threshold))
    best = score.new_full((num_images,), -math.inf).scatter_reduce(0, seg, score, "amax")
    return keep | (score == best.index_select(0, seg))


def gumbel_keep_mask(log_probs: torch.Tensor, prev_mask: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Hard straight-through Gumbel keep decision (B, N), nested inside ``prev_mask`` (B, N)."""
    hard = F.gumbel_softmax(log_probs.float(), tau=tau, hard=True, dim=-1)[..., 0]
    return hard * prev_mask


def build_predictors(
    embed_dim: int, keep_probabilities: list[float], eps: float = 1e-5, hidden: int | None = None
) -> nn.ModuleList:
    """One fresh :class:`TokenPredictor` (of width ``hidden``, default ``embed_dim``) per stage: linear weights
    truncated-normal (std 0.02), biases zero, then each starting at its stage's keep probability."""
    predictors = nn.ModuleList(TokenPredictor(embed_dim, eps, hidden) for _ in keep_probabilities)
    for module in predictors.modules():
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
    for predictor, probability in zip(predictors, keep_probabilities, strict=True):
        predictor.init_keep_probability(probability)
    return predictors


def random_decisions(
    batch: int, num_patches: int, counts: list[int], generator: torch.Generator | None = None, device=None
) -> list[torch.Tensor]:
    """Nested uniformly random kept indices (B, k_s) per stage, the same counts as the predictor's."""
    keys = torch.rand(batch, num_patches, generator=generator).to(device)
    order = keys.argsort(dim=1)  # a random permutation per image; nested prefixes of it
    return [order[:, :k] for k in counts]


def random_selector(seed: int = 0) -> Callable[[int, int, list[int]], list[torch.Tensor]]:
    """A ``decisions_fn(batch, num_patches, counts)`` for :func:`dynamicvit.tasks.evaluate.evaluate`, seeded."""
    gen = torch.Generator().manual_seed(seed)
    return lambda batch, num_patches, counts: random_decisions(batch, num_patches, counts, gen)
