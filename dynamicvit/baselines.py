"""Token-selection baselines that reuse a sparse model's weights and budget (eval mode)."""

from __future__ import annotations

import torch

__all__ = ["random_decisions", "random_selector"]


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
