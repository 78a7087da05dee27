"""The learned per-image budget (keep mode ``"learned"``): *how many* tokens an image keeps is decided
apart from *which* ones.

A stage's :class:`BudgetPredictor` reads the mean of an image's alive patch tokens and gives the fraction
``r_i`` of them the image keeps; the stage's token predictor ranks the tokens as in the fixed mode, and
the image keeps its ``k_i = round(r_i · n_i)`` best (at least one). A threshold on keep probabilities
(the ``"threshold"`` mode) mixes the two: the predictor's global half shifts a whole image's scores, so a
briefly trained model keeps all or almost none of an image's tokens.

Training keeps the hard top-``k_i`` set in the forward pass and takes its gradient from a soft mask
``sigmoid(z_j - τ_i)`` around the threshold ``τ_i`` that ``r_i`` places among the image's sorted scores
(:func:`soft_topk_mask`), so the task loss reaches both the ranking and the budget; the keep-ratio term on
the batch average holds the mean budget at its target while images trade tokens among themselves.
At inference the counts run packed like the adaptive mode; :func:`dynamicvit.core.calibrate.calibrate`
shifts each stage's budgets (``offset``) so the mean cost on held-out images meets a target.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "BudgetPredictor",
    "build_budget_predictors",
    "image_means",
    "learned_counts",
    "packed_means",
    "soft_topk_mask",
    "topk_keep_packed",
]


class BudgetPredictor(nn.Module):
    """Per image, the fraction of its alive patch tokens one stage keeps, from their mean ``(B, C)``.

    Starts at ``keep_probability`` for every image (zero last weight), so a fresh model keeps the fixed
    mode's counts. ``offset`` (a buffer, saved with the weights) is the calibration's shift of the log-odds.
    """

    def __init__(self, embed_dim: int, keep_probability: float, eps: float = 1e-5) -> None:
        super().__init__()
        hidden = max(embed_dim // 4, 4)
        self.norm = nn.LayerNorm(embed_dim, eps=eps)
        self.fc1 = nn.Linear(embed_dim, hidden)
        self.fc2 = nn.Linear(hidden, 1)
        self.register_buffer("offset", torch.zeros(()))
        p = min(max(float(keep_probability), 1e-3), 1 - 1e-3)
        nn.init.trunc_normal_(self.fc1.weight, std=0.02)
        nn.init.zeros_(self.fc1.bias)
        nn.init.zeros_(self.fc2.weight)
        nn.init.constant_(self.fc2.bias, math.log(p / (1 - p)))

    def logits(self, means: torch.Tensor) -> torch.Tensor:
        """The budgets' log-odds (B,) before the calibration ``offset``."""
        return self.fc2(F.gelu(self.fc1(self.norm(means)))).squeeze(-1).float()

    def forward(self, means: torch.Tensor) -> torch.Tensor:
        """The kept fraction (B,) of each image's alive tokens, in (0, 1)."""
        return torch.sigmoid(self.logits(means) + self.offset)


def build_budget_predictors(embed_dim: int, keep_probabilities: list[float], eps: float = 1e-5) -> nn.ModuleList:
    """One :class:`BudgetPredictor` per stage, each starting at its stage's keep probability."""
    return nn.ModuleList(BudgetPredictor(embed_dim, p, eps) for p in keep_probabilities)


def image_means(tokens: torch.Tensor, alive: torch.Tensor | None) -> torch.Tensor:
    """The mean (B, C) of each image's alive tokens of ``tokens`` (B, N, C); ``alive`` (B, N) or None (all)."""
    if alive is None:
        return tokens.mean(dim=1)
    weight = alive.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weight).sum(dim=1) / weight.sum(dim=1).clamp_min(1e-6)


def packed_means(x: torch.Tensor, seg: torch.Tensor, num_images: int) -> torch.Tensor:
    """The mean (num_images, C) of packed rows ``x`` (T, C) per image (``seg``: each row's image)."""
    sums = x.new_zeros(num_images, x.shape[-1]).index_add_(0, seg, x)
    return sums / torch.bincount(seg, minlength=num_images).clamp_min(1).to(x.dtype)[:, None]


def learned_counts(ratio: torch.Tensor, alive: torch.Tensor) -> torch.Tensor:
    """Tokens each image keeps: ``round(ratio · alive)`` clamped to [1, alive] (long, same shape)."""
    alive = alive.to(ratio.device)
    counts = torch.round(ratio.detach().float() * alive.float()).long()
    return torch.minimum(counts.clamp_min(1), alive.long().clamp_min(1))


def soft_topk_mask(
    scores: torch.Tensor, alive: torch.Tensor, ratio: torch.Tensor, noise: bool = True, temperature: float = 1.0
) -> torch.Tensor:
    """Training decision of the learned mode: keep each image's ``round(ratio · n)`` best alive tokens.

    Forward: the hard top-k mask (B, N) over the alive tokens, by ``scores`` (keep log-odds (B, N)) plus
    Gumbel noise when ``noise`` (sampling without replacement: exploration as in the fixed mode's Gumbel
    mask). Backward: the gradient of ``sigmoid((z - τ) / temperature)``, where ``τ`` is the perturbed scores'
    threshold that ``ratio`` places between the image's sorted scores (linear between neighbours), so it
    reaches the scores and the budgets ``ratio`` (B,).

    Args:
        scores: keep log-odds (B, N).
        alive: (B, N) 0/1 tokens alive before the stage.
        ratio: (B,) the fraction of its alive tokens each image keeps.
        noise: add Gumbel noise to the scores (training).
        temperature: the soft mask's temperature.

    Returns:
        (B, N) float mask: 1 kept, 0 dropped, nested in ``alive``; straight-through gradients.
    """
    alive = alive.float()
    z = scores.float()
    if noise:
        z = z - torch.log(-torch.log(torch.rand_like(z).clamp(1e-9, 1 - 1e-9)))
    z = z.masked_fill(alive < 0.5, -1e4)
    n = alive.sum(dim=1)
    order = z.argsort(dim=1, descending=True, stable=True)
    ordered = z.gather(1, order)
    places = torch.arange(z.shape[1], device=z.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, places)
    hard = ((rank < learned_counts(ratio, n)[:, None]) & (alive > 0.5)).float()
    # τ at position ratio·n - 0.5 among the sorted scores: halfway between the k-th and (k+1)-th for an integer k
    position = (ratio.float() * n - 0.5).clamp(min=0.0)
    position = torch.minimum(position, (n - 1).clamp_min(0))
    low = position.floor().long()
    high = torch.minimum(low + 1, (n - 1).clamp_min(0).long())
    frac = position - low.float()
    tau = ordered.gather(1, low[:, None]) * (1 - frac[:, None]) + ordered.gather(1, high[:, None]) * frac[:, None]
    soft = torch.sigmoid((z - tau) / temperature) * alive
    return hard + soft - soft.detach()


def topk_keep_packed(score: torch.Tensor, seg: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Per image, its ``counts[i]`` best-scored tokens among packed ``score`` (T,) (``seg``: each token's
    image); returns a (T,) bool mask. Ties go to the earlier token; no image depends on another."""
    order = score.argsort(descending=True, stable=True)
    order = order[seg.index_select(0, order).argsort(stable=True)]  # grouped by image, best first
    per_image = torch.bincount(seg, minlength=counts.numel())
    starts = torch.cumsum(per_image, 0) - per_image
    grouped = seg.index_select(0, order)
    rank = torch.arange(order.numel(), device=score.device) - starts.index_select(0, grouped)
    keep = torch.zeros_like(score, dtype=torch.bool)
    keep[order] = rank < counts.to(score.device).index_select(0, grouped)
    return keep
