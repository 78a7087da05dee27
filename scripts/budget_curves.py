"""Accuracy against mean MACs of the three keep modes – fixed, threshold and learned – from one teacher at
three budgets, on Cluttered Fashion-MNIST.

``--data scale``: 64×64 canvases whose item is resized by ½× to 2× (``--item-scale 2``) with two distractor
fragments, so an image's object covers from about 4 to 49 of its 64 tokens. ``--data clutter``: the demo's
48×48 canvases (items of one size, two fragments). ``--data scenes``: segmentation (``--task segment``, an
FPN on the pruned ViT's restored tokens, mIoU) of 64×64 scenes with 1 to 6 items (``--scene-items 1
--scene-items-max 6``), whose items cover from about 12 to 36 of the 64 tokens. For each keep rate two
students are fine-tuned from the teacher with the demo's recipe (one epoch, backbone frozen): *fixed* (the
paper's keep-ratio term on each image) and *learned* (``--keep-mode learned``, the term on the batch
average). Five models are evaluated on the test images: the fixed student as trained, the same student
with thresholds calibrated to its mean counts (*threshold*), the learned student with budget offsets
calibrated to the same counts (*learned*), the learned student with the budgets it was trained to
(*learned, as trained*: its mean cost is where training left it, compared with the fixed students' curve),
and the learned student at the fixed mode's counts (*learned, fixed counts*: what its training gives
without per-image budgets, so *learned* minus it is what the budgets themselves add); calibration uses
held-out training canvases, never the test split.

Writes ``docs/results/budgets-DATA.json`` (figures and provenance) and ``docs/results/budgets-DATA.png``
(top-1, or mIoU, against mean GMACs; each mode's per-image GMACs spread). About 25 minutes per data set on
2 cores: ``.venv/bin/python scripts/budget_curves.py --data scale``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import torch

from dynamicvit.builder import (
    build_run_dataset,
    evaluate,
)
from dynamicvit.config import RunConfig
from dynamicvit.core.calibrate import calibrate
from dynamicvit.core.files import atomic_write_text
from dynamicvit.core.flops import counts_per_image, per_image_gmacs
from dynamicvit.core.interfaces import find_reducer
from dynamicvit.core.provenance import provenance
from dynamicvit.draw.figures import plt, save_figure
from dynamicvit.train.trainer import Trainer

DATA = {
    "scale": dict(canvas=64, img_size=64, distractors=2, item_scale=2.0),
    "clutter": dict(canvas=48, img_size=48, distractors=2),
    "scenes": dict(
        data="cluttered-fashion-scenes", task="segment", canvas=64, img_size=64, scene_items=1, scene_items_max=6
    ),
}
METRICS = {"classify": "top1", "segment": "miou"}  # the score each task's curve plots
MODES = ("fixed", "threshold", "learned", "learned, as trained", "learned, fixed counts")


def train(cfg: RunConfig) -> torch.nn.Module:
    """Train, or reuse the finished run of the same configuration in ``cfg.run.out_dir``."""
    cfg.run.resume = (Path(cfg.run.out_dir) / "last.pth").exists()
    with Trainer(cfg, reuse_finished=True) as trainer:
        trainer.fit()
    return trainer.model.eval()


def per_image_spread(model: torch.nn.Module, dataset, batch_size: int = 256) -> list[float]:
    """Each test image's GMACs in the model's per-image keep mode."""
    counts = []
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            x = torch.stack([dataset[i][0] for i in range(start, min(start + batch_size, len(dataset)))])
            counts += counts_per_image(model(x, return_decisions=True).decisions)
    return per_image_gmacs(model, counts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", choices=sorted(DATA), default="scale")
    p.add_argument("--runs", default="runs/budgets", help="run folders (reused when finished)")
    p.add_argument("--out", default="docs/results", help="writes budgets-DATA.json and budgets-DATA.png there")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--keep-rates", type=float, nargs="+", default=[0.5, 0.7, 0.85])
    p.add_argument("--train-limit", type=int, default=20000)
    p.add_argument("--val-limit", type=int, default=None)
    p.add_argument("--teacher-epochs", type=int, default=3)
    p.add_argument("--calib-images", type=int, default=1000)
    args = p.parse_args()
    start = time.perf_counter()
    runs, out = Path(args.runs) / args.data, Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = dict(
        model="dvit_tiny_fmnist",
        **{"data": "cluttered-fashion-mnist", **DATA[args.data]},
        data_dir=args.data_dir,
        batch_size=128,
        train_limit=args.train_limit,
        val_limit=args.val_limit,
        progress=False,
    )
    metric = METRICS[RunConfig.of(**common).task]
    teacher_cfg = RunConfig.of(dense=True, epochs=args.teacher_epochs, lr=2e-3, warmup_epochs=0.2, min_lr=1e-5,
                              out_dir=str(runs / "teacher"), **common)  # fmt: skip
    teacher = train(teacher_cfg)
    student = dict(
        teacher_checkpoint=str(runs / "teacher" / "last.pth"),
        epochs=1,
        lr=1e-3,
        backbone_lr_scale=0.1,
        freeze_backbone_epochs=1.0,
        ratio_weight=10.0,
        warmup_epochs=0.1,
        min_lr=1e-5,
        prune_layers=[1, 2, 3],
        **common,
    )  # the demo's student recipe
    test_set = build_run_dataset(RunConfig.of(**common), "test")
    held_out = build_run_dataset(RunConfig.of(**{**common, "train_limit": args.calib_images, "seed": 1}), "train")
    dense = evaluate(teacher, test_set)
    budgets, spreads = [], {}
    for rate in args.keep_rates:
        fixed = train(RunConfig.of(keep_rate=rate, out_dir=str(runs / f"fixed-{rate}"), **student))
        learned = train(RunConfig.of(keep_rate=rate, keep_mode="learned", ratio_loss="batch",
                                    out_dir=str(runs / f"learned-{rate}"), **student))  # fmt: skip
        threshold = copy.deepcopy(fixed)
        reducer = find_reducer(fixed)
        targets = [c / reducer.num_patches for c in reducer.keep_counts()]
        row = {"keep_rate": rate, "targets": targets}
        trained = copy.deepcopy(learned)  # its budgets as trained: the mean the keep-ratio term reached
        ranking = copy.deepcopy(learned)  # its ranking at the fixed mode's counts: what the budgets themselves add
        find_reducer(ranking).keep_mode = "fixed"
        row["threshold_calibration"] = calibrate(threshold, held_out, targets)
        row["learned_calibration"] = calibrate(learned, held_out, targets)
        for mode, model in zip(MODES, (fixed, threshold, learned, trained, ranking), strict=True):
            r = evaluate(model, test_set)
            row[mode] = {k: r[k] for k in ("top1", "miou", "gmacs", "kept_tokens", "per_image") if k in r}
            if find_reducer(model).per_image:
                spreads[(rate, mode)] = per_image_spread(model, test_set)
        budgets.append(row)
        print(f"rho {rate}: " + "  ".join(f"{m} {row[m][metric]:.2f}% {row[m]['gmacs']:.4f} G" for m in MODES))
    command = " ".join(["python", "scripts/budget_curves.py", *sys.argv[1:]])
    result = {
        "data": args.data,
        "data_options": DATA[args.data],
        "metric": metric,
        "train_images": args.train_limit,
        "calibration_images": len(held_out),
        "test_images": len(test_set),
        "dense": {k: dense[k] for k in ("top1", "miou", "gmacs") if k in dense},
        "budgets": budgets,
        "provenance": provenance(command),
        "seconds": time.perf_counter() - start,
    }
    atomic_write_text(out / f"budgets-{args.data}.json", json.dumps(result, indent=2))
    plot(result, spreads, out / f"budgets-{args.data}.png")
    print(f"written to {out}/budgets-{args.data}.json ({result['seconds']:.0f} s)")


def plot(result: dict, spreads: dict, path: Path) -> None:
    """Top-1 (or mIoU) against mean GMACs per mode (left) and each mode's per-image GMACs at every budget (right)."""
    metric = result["metric"]
    fig, (curve, spread) = plt.subplots(1, 2, figsize=(11, 4.4))
    styles = {
        "fixed": "s-",
        "threshold": "^--",
        "learned": "o-",
        "learned, as trained": "o:",
        "learned, fixed counts": "d-.",
    }
    for mode in [m for m in MODES if m in result["budgets"][0]]:
        rows = result["budgets"]
        curve.plot([r[mode]["gmacs"] for r in rows], [r[mode][metric] for r in rows], styles[mode], label=mode)
    curve.axhline(result["dense"][metric], color="grey", lw=0.8, ls=":", label="dense teacher")
    curve.set_xlabel("mean GMACs per image")
    curve.set_ylabel({"top1": "top-1 (%)", "miou": "mIoU (%)"}[metric])
    curve.legend(fontsize=8)
    labels, values = [], []
    for (rate, mode), gmacs in spreads.items():
        labels.append(f"{mode}\nρ {rate}")
        values.append([g * 1e3 for g in gmacs])
    spread.boxplot(values, showfliers=False)
    spread.set_xticks(range(1, len(labels) + 1), labels, fontsize=7, rotation=40, ha="right")  # no overlap
    spread.set_ylabel("MMACs per image (p25–p75, whiskers 1.5 IQR)")
    fig.suptitle(f"Cluttered Fashion-MNIST ({result['data']}): keep modes at three budgets", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)


if __name__ == "__main__":
    main()
