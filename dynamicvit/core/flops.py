"""Exact multiply-accumulate counts of a model's inference path, per part and total.

Counts come from ``torch.utils.flop_counter`` (matmuls, convolutions, attention) on a
real eval-mode forward, so they follow whatever tokens the model really keeps. Reported
as MACs (the fvcore convention the papers call "FLOPs"); element-wise ops, norms and
softmax are not counted, as in fvcore's defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import pairwise

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, flop_registry, register_flop_formula, sdpa_flop_count

from dynamicvit.core.interfaces import find_reducer
from dynamicvit.core.tokens import in_channels

__all__ = [
    "FlopReport",
    "count_flops",
    "counts_per_image",
    "distribution",
    "input_size",
    "per_image_gmacs",
    "per_image_report",
]

_SDPA_CPU = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
if _SDPA_CPU not in flop_registry:  # torch counts the CUDA kernels only; CPU SDPA would count as zero

    @register_flop_formula(_SDPA_CPU)
    def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)


@dataclass
class FlopReport:
    """MACs per image of one eval forward: ``parts`` (ordered) sum to ``total``."""

    total: int
    parts: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)

    @property
    def gmacs(self) -> float:
        return self.total / 1e9

    def to_dict(self) -> dict:
        return {**asdict(self), "gmacs": self.gmacs}


def input_size(model: nn.Module, img_size: int | tuple[int, int] | None = None) -> tuple[int, int, int]:
    """(C, H, W) a model takes: ``img_size`` if given, else its patch embedding's, else its pretrained config's."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    chans, h, w = cfg.get("input_size", (3, 224, 224))
    pe = getattr(model, "patch_embed", None)
    if pe is not None and getattr(pe, "img_size", None) is not None:
        (h, w), chans = pe.img_size, in_channels(model)
    else:
        chans = in_channels(model)
    if img_size is not None:
        h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    return chans, h, w


def _stage_groups(model: nn.Module, prune_layers: list[int] | None) -> list[tuple[str, list[str]]]:
    """Part name → child-module names, in forward order; ViT blocks grouped by pruning stage."""
    children = [name for name, _ in model.named_children()]
    if not hasattr(model, "blocks"):
        return [(c, [c]) for c in children]
    layers = model.prune_layers if find_reducer(model) is model else (prune_layers or [])
    bounds = [0, *layers, len(model.blocks)]
    groups = [("embed", ["patch_embed"])]
    groups += [(f"blocks {a}-{b - 1}", [f"blocks.{i}" for i in range(a, b)]) for a, b in pairwise(bounds)]
    if hasattr(model, "score_predictor"):
        groups.append(("predictors", [f"score_predictor.{i}" for i in range(len(model.score_predictor))]))
    groups.append(("head", [c for c in children if c not in ("patch_embed", "blocks", "score_predictor")]))
    return groups


def _counted(model: nn.Module, x: torch.Tensor, decisions: list | None, grad: bool = False) -> FlopCounterMode:
    """The flop counter of one forward, without autograd; with it when torch's module tracker (inside the
    counter) trips over a parameter view passed to a submodule without autograd (timm's attention
    pooling in SigLIP models: "Expected gradient function to be set")."""
    try:
        with torch.set_grad_enabled(grad), FlopCounterMode(display=False) as counter:
            model(x) if decisions is None else model(x, decisions=decisions)
    except (AssertionError, AttributeError) as err:
        if grad or ("gradient function" not in str(err) and "next_functions" not in str(err)):
            raise
        return _counted(model, x, decisions, grad=True)
    return counter


def count_flops(
    model: nn.Module,
    img_size: int | tuple[int, int] | None = None,
    prune_layers: list[int] | None = None,
    decisions: list | None = None,
) -> FlopReport:
    """MACs of ``model``'s eval forward on one image (its configured size unless given).

    ``prune_layers`` groups a dense ViT's blocks like a sparse model's stages, for side-by-side reports;
    ``decisions`` forces the kept tokens (e.g. an adaptive-mode image's counts, :func:`per_image_gmacs`).

    Args:
        model: a dense or reduced model (classifier, segmenter or backbone).
        img_size: input size (default: the model's).
        prune_layers: blocks grouping a dense ViT's report by stage.
        decisions: kept tokens to force.

    Returns:
        A report with ``total`` MACs, ``gmacs``, MACs per part and tokens per stage.
    """
    was_training = model.training
    model.eval()
    ref = next(model.parameters())
    noise = torch.Generator().manual_seed(0)  # the global random state is a training run's, not ours
    x = torch.randn(1, *input_size(model, img_size), generator=noise).to(ref.device, ref.dtype)
    try:
        counter = _counted(model, x, decisions)
    finally:
        model.train(was_training)
    per_module = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    root = type(model).__name__
    parts = {
        label: sum(per_module.get(f"{root}.{p}", 0) for p in prefixes) // 2
        for label, prefixes in _stage_groups(model, prune_layers)
    }
    total = counter.get_total_flops() // 2
    parts = {k: v for k, v in parts.items() if v}
    other = total - sum(parts.values())
    if other:
        parts["other"] = other
    tokens = {}
    reducer = find_reducer(model)
    if reducer is not None:
        n = reducer.last_tokens
        counts = reducer.token_counts(n) if decisions is None else counts_per_image(decisions)[0]
        tokens = {"input": n, **{f"stage {s + 1}": c for s, c in enumerate(counts)}}
    return FlopReport(total=total, parts=parts, tokens=tokens)


def counts_per_image(decisions: list) -> list[tuple[int, ...]]:
    """Each image's kept tokens per stage, from eval decisions: (B, k) index tensors (the fixed mode) or,
    per stage, one index tensor per image (the adaptive mode)."""
    per_stage = [[len(d) for d in stage] if isinstance(stage, (list, tuple)) else [stage.shape[1]] * stage.shape[0]
                 for stage in decisions]  # fmt: skip
    return list(zip(*per_stage, strict=True))


def per_image_gmacs(model: nn.Module, counts: list[tuple[int, ...]], img_size=None) -> list[float]:
    """GMACs of each image of an adaptive-mode model from its per-stage kept counts (the cost depends on
    the counts only: one counted forward per distinct tuple, forcing that many tokens)."""
    cost = {
        c: count_flops(model, img_size, decisions=[[torch.arange(k)] for k in c]).gmacs for c in sorted(set(counts))
    }
    return [cost[c] for c in counts]


def distribution(values: list[float]) -> dict[str, float]:
    """Mean and 10th/50th/90th percentiles of per-image values."""
    t = torch.tensor(values, dtype=torch.float64)
    p10, p50, p90 = torch.quantile(t, torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)).tolist()
    return {"mean": float(t.mean()), "p10": p10, "p50": p50, "p90": p90}


def per_image_report(counts: list[tuple[int, ...]], gmacs: list[float]) -> dict:
    """The distribution over images of the kept tokens after each stage and of the GMACs."""
    stages = {f"stage {s + 1}": distribution([c[s] for c in counts]) for s in range(len(counts[0]))}
    return {"images": len(counts), "tokens": stages, "gmacs": distribution(gmacs)}
