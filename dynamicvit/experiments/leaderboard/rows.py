"""A board's row names and per-image results as rows store them (the rows themselves:
:class:`dynamicvit.experiments.rows.RowStore`)."""

from __future__ import annotations

import base64

import numpy as np

__all__ = ["pack_correct", "row_key", "unpack_correct"]


def row_key(regime: str, budget: float, entry: str, seed: int | None) -> str:
    """The row's file name (without ``.json``): ``frozen_0.5_tome`` or ``finetune_0.65_dynamicvit+topk_s1``."""
    return f"{regime}_{budget:g}_{entry}" + ("" if seed is None else f"_s{seed}")


def pack_correct(correct: np.ndarray) -> str:
    """Per-image correctness (bool, N) as base64 of its packed bits."""
    return base64.b64encode(np.packbits(np.asarray(correct, dtype=bool)).tobytes()).decode()


def unpack_correct(text: str, count: int) -> np.ndarray:
    """The inverse of :func:`pack_correct` for ``count`` images."""
    return np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))[:count].astype(bool)
