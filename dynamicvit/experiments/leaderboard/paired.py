"""Who leads a board, with intervals that know the test set is finite and seeds differ.

Every row stores each seed's per-image correctness on the same test canvases. The lead of one entry over
another is their paired difference in top-1, with a 95 % interval from a bootstrap that resamples the test
images (Poisson weights, the same draw for both entries: their errors on an image are correlated) and,
independently, each entry's seeds. A lead whose interval holds zero is a tie.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Lead", "paired_difference"]

DRAWS = 2000


def paired_difference(a: np.ndarray, b: np.ndarray, draws: int = DRAWS, seed: int = 0) -> tuple[float, float, float]:
    """Top-1 of ``a`` minus top-1 of ``b`` in points, with its 95 % bootstrap interval.

    Args:
        a: per-seed, per-image correctness of the first entry (Sa, N), bool.
        b: the same of the second entry (Sb, N), on the same N images.
        draws: bootstrap draws.
        seed: the bootstrap's generator seed (the interval is reproducible).

    Returns:
        ``(difference, low, high)`` in points.
    """
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"paired rows must share their test images: {a.shape[1]} vs {b.shape[1]}")
    rng = np.random.default_rng(seed)
    n = a.shape[1]
    fa, fb = a.astype(np.float32).T, b.astype(np.float32).T  # (N, S)
    diffs = []
    for start in range(0, draws, 200):
        k = min(200, draws - start)
        weights = rng.poisson(1.0, size=(k, n)).astype(np.float32)  # images resampled (Poisson bootstrap)
        weights /= weights.sum(axis=1, keepdims=True)
        acc_a, acc_b = weights @ fa, weights @ fb  # per seed (k, S)
        pick_a = rng.integers(0, a.shape[0], size=acc_a.shape)  # seeds resampled
        pick_b = rng.integers(0, b.shape[0], size=acc_b.shape)
        diffs.append(np.take_along_axis(acc_a, pick_a, 1).mean(1) - np.take_along_axis(acc_b, pick_b, 1).mean(1))
    low, high = np.percentile(100 * np.concatenate(diffs), [2.5, 97.5])
    return float(100 * (a.mean() - b.mean())), float(low), float(high)


class Lead:
    """The leader of a block of entries (regime × budget) and where the others stand against it.

    Args:
        correct: each entry's per-seed correctness (S, N), by name.
        labels: the entries' names in sentences.
    """

    def __init__(self, correct: dict[str, np.ndarray], labels: dict[str, str]) -> None:
        if len(correct) < 2:
            raise ValueError("a lead needs at least two entries")
        self.order = sorted(correct, key=lambda k: -correct[k].mean())
        self.leader = self.order[0]
        self.gaps = {k: paired_difference(correct[self.leader], correct[k]) for k in self.order[1:]}
        self.labels = labels

    @property
    def tied(self) -> list[str]:
        """The entries whose gap to the leader has an interval holding zero."""
        return [k for k in self.order[1:] if self.gaps[k][1] <= 0]

    def sentence(self, where: str, ours: str | None = None) -> str:
        """One sentence: who leads at ``where`` (or which entries tie), and where the entry ``ours`` stands."""
        name = lambda k: self.labels.get(k, k)  # noqa: E731
        runner = self.order[1]
        gap, low, high = self.gaps[runner]
        interval = f"95 % interval {low:+.2f} to {high:+.2f}"
        if not self.tied:
            line = f"{where}, {name(self.leader)} leads: {gap:.2f} points ahead of {name(runner)} ({interval})."
        else:
            others = ", ".join(name(k) for k in self.tied)
            line = (
                f"{where}, {name(self.leader)} ties with {others} (ahead of {name(runner)} by {gap:.2f}, {interval})."
            )
        if ours is not None and ours != self.leader:
            gap, low, high = self.gaps[ours]
            line += f" {name(ours)} is {gap:.2f} behind ({low:+.2f} to {high:+.2f})."
        return line
