"""The field's benchmark on three proxies by token grid: each proxy's dense teacher trained once (cached
in its run folder) and every method compared at three MACs budgets, both regimes, over seeds.

* ``demo`` – the demo's canvases: 48×48, one item and two distractors, 8-pixel patches (6×6 = 36 tokens);
* ``scale`` – 80×80 canvases whose item is resized by up to 2× either way (10×10 = 100 tokens);
* ``grid14`` – 112×112 canvases, items up to 2× and three distractors (14×14 = 196 tokens, ImageNet's grid).

The result (``compare.json`` with its provenance) is what the leaderboard pages render.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dynamicvit.config import TrainConfig
from dynamicvit.core.keep import DEFAULT_MASK_RULE
from dynamicvit.methods.registry import METHODS
from dynamicvit.tools.compare import run_compare
from dynamicvit.tools.demo import STUDENT_RECIPE, TEACHER_RECIPE
from dynamicvit.train.trainer import Trainer

__all__ = ["BUDGETS", "PROXIES", "SIZES", "add_variant", "proxy_config", "run_leaderboard"]

BUDGETS = (0.5, 0.65, 0.8)
PROXIES: dict[str, dict] = {
    "demo": {"canvas": 48, "img_size": 48, "distractors": 2},
    "scale": {"canvas": 80, "img_size": 80, "distractors": 2, "item_scale": 2.0},
    "grid14": {"canvas": 112, "img_size": 112, "distractors": 3, "item_scale": 2.0},
}
# training-set sizes and epochs that keep a proxy's whole comparison near two hours on 2 CPU cores
SIZES = {"full": {"train_limit": 20000, "val_limit": 5000}, "quick": {"train_limit": 64, "val_limit": 32}}


def proxy_config(proxy: str, out: Path, quick: bool = False, data_dir: str | None = None) -> TrainConfig:
    """The shared recipe of a proxy's comparison (the demo's student recipe, one epoch)."""
    if proxy not in PROXIES:
        raise ValueError(f"unknown proxy {proxy!r}; choose one of {', '.join(PROXIES)}")
    return TrainConfig(
        model="dvit_tiny_fmnist",
        model_kwargs={"depth": 6},
        data="cluttered-fashion-mnist",
        data_dir=data_dir,
        batch_size=32 if quick else 128,
        epochs=1,
        **STUDENT_RECIPE,
        freeze_backbone_epochs=0.0,
        prune_layers=[1, 2, 3],
        teacher_checkpoint=str(out / "teacher" / "last.pth"),
        out_dir=str(out / "compare"),
        progress=not quick,
        **PROXIES[proxy],
        **SIZES["quick" if quick else "full"],
    )


def run_leaderboard(
    proxy: str,
    out_dir: str = "runs/leaderboard",
    seeds: tuple[int, ...] = (0, 1),
    methods: tuple[str, ...] = tuple(METHODS),
    quick: bool = False,
    data_dir: str | None = None,
    resume: bool = True,
    limits: tuple[int, int] | None = None,
    variant: dict | None = None,
    tag: str = "",
) -> dict:
    """Train (or reuse) the proxy's teacher, then run ``compare`` in both regimes at :data:`BUDGETS`.

    Args:
        proxy: a name in :data:`PROXIES`.
        out_dir: the parent folder; the proxy's runs go to ``out_dir/proxy``.
        seeds: training seeds of the trained rows.
        methods: the methods to compare.
        quick: seconds-long sizes (tests).
        data_dir: Fashion-MNIST's folder (default: the data set's own lookup).
        resume: reuse finished runs of an earlier call.
        limits: training and test images (default: :data:`SIZES`).
        variant: config fields of a DynamicViT variant (``mask_rule``, ``merge_dropped``) for this run.
        tag: the variant's name: its comparison goes to ``compare-TAG`` beside the main one.

    Returns:
        The comparison's summary.
    """
    out = Path(out_dir) / proxy
    cfg = dataclasses.replace(proxy_config(proxy, out, quick, data_dir), resume=resume)
    if limits is not None:
        cfg = dataclasses.replace(cfg, train_limit=limits[0], val_limit=limits[1])
    compare_dir = out / (f"compare-{tag}" if tag else "compare")
    cfg = dataclasses.replace(cfg, **(variant or {}), out_dir=str(compare_dir))
    teacher = dataclasses.replace(
        cfg, dense=True, mask_rule=DEFAULT_MASK_RULE, merge_dropped=False, teacher_checkpoint=None,
        epochs=1 if quick else 4, **TEACHER_RECIPE, out_dir=str(out / "teacher"),
        resume=resume and (out / "teacher" / "last.pth").exists(),
    )  # fmt: skip
    with Trainer(teacher, reuse_finished=True) as trainer:
        trainer.fit()
    return run_compare(
        cfg,
        budgets=BUDGETS,
        methods=methods,
        out_dir=str(compare_dir),
        bench_batch=4 if quick else 32,
        bench_repeats=1 if quick else 10,
        seeds=seeds,
        regimes=("frozen", "finetune"),
    )


def add_variant(board: dict, variant: dict, tag: str, label: str) -> dict:
    """The leaderboard ``board`` with a variant's DynamicViT rows added as the method ``dynamicvit+TAG``
    (same proxy, teacher, budgets, regimes and seeds; throughput timed in the variant's own run, its speed-up
    against the dense model of that run); the variant's provenance is kept under ``variants``.

    Args:
        board: the main comparison's summary.
        variant: the variant run's summary (its DynamicViT rows).
        tag: the variant's name.
        label: its name in tables.

    Returns:
        A new summary.
    """
    if (board["budgets"], board["regimes"], board["seeds"]) != (
        variant["budgets"],
        variant["regimes"],
        variant["seeds"],
    ):
        raise ValueError(f"variant {tag} was run at other budgets, regimes or seeds than the leaderboard")
    name = f"dynamicvit+{tag}"
    rows = [r for r in board["rows"] if r["method"] != name]
    rows += [{**r, "method": name} for r in variant["rows"] if r["method"] == "dynamicvit"]
    methods = [m for m in board["methods"] if m != name] + [name]
    variants = {**board.get("variants", {}), tag: {"provenance": variant["provenance"], "label": label}}
    return {**board, "rows": rows, "methods": methods, "labels": {**board["labels"], name: label}, "variants": variants}
