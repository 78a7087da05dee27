"""Fixed vs adaptive token budgets on Cluttered Fashion-MNIST whose difficulty varies per image.

Each 48×48 canvas holds one item and a random 0–6 fragments of other items. One dense teacher; two
DynamicViT students fine-tuned from it with the same budget (one epoch, keep rate 0.7): *fixed*
(the paper's per-image keep-ratio loss, every image keeps the same count) and *adaptive* (the
keep-ratio loss on the batch average, then thresholds calibrated on held-out training images to the
fixed mode's average counts). Both are evaluated on the same test images; the adaptive student also
in the fixed mode and the fixed student also calibrated, to separate training from the inference rule.

Writes ``results.json``, ``kept_vs_difficulty.png`` (kept tokens per image against the number of
distractors) and ``easy_hard.png`` (easy and hard test images with the tokens they keep) to ``--out``.
Run: ``.venv/bin/python scripts/adaptive_budgets.py --out runs/adaptive`` (about 20 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from dynamicvit.core.calibrate import calibrate  # noqa: E402
from dynamicvit.core.flops import counts_per_image  # noqa: E402
from dynamicvit.data import FASHION_CLASSES  # noqa: E402
from dynamicvit.tools.viz import save_kept_token_grid  # noqa: E402
from dynamicvit.train.build import build_run_dataset  # noqa: E402
from dynamicvit.train.config import TrainConfig  # noqa: E402
from dynamicvit.train.evaluate import evaluate  # noqa: E402
from dynamicvit.train.trainer import Trainer  # noqa: E402


def train(cfg: TrainConfig) -> torch.nn.Module:
    """Train, or reuse the finished run of the same configuration in ``cfg.out_dir``."""
    cfg.resume = (Path(cfg.out_dir) / "last.pth").exists()
    trainer = Trainer(cfg, reuse_finished=True)
    trainer.fit()
    return trainer.model.eval()


def kept_counts(model: torch.nn.Module, dataset, batch_size: int = 256) -> list[tuple[int, ...]]:
    counts = []
    with torch.inference_mode():
        for start in range(0, len(dataset), batch_size):
            x = torch.stack([dataset[i][0] for i in range(start, min(start + batch_size, len(dataset)))])
            counts += counts_per_image(model(x, return_decisions=True).decisions)
    return counts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="runs/adaptive")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--train-limit", type=int, default=20000)
    p.add_argument("--val-limit", type=int, default=5000)
    p.add_argument("--teacher-epochs", type=int, default=3)
    p.add_argument("--calib-images", type=int, default=1000)
    p.add_argument("--student-epochs", type=int, default=1, help="fine-tune epochs of both students")
    args = p.parse_args()
    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = dict(
        model="dvit_tiny_fmnist",
        data="cluttered-fashion-mnist",
        data_dir=args.data_dir,
        canvas=48,
        img_size=48,
        distractors=0,
        distractors_max=6,
        batch_size=128,
        train_limit=args.train_limit,
        val_limit=args.val_limit,
        progress=False,
    )
    train(TrainConfig(dense=True, epochs=args.teacher_epochs, lr=2e-3, warmup_epochs=0.2, min_lr=1e-5,
                      out_dir=str(out / "teacher"), **common))  # fmt: skip
    student = dict(
        teacher_checkpoint=str(out / "teacher" / "last.pth"),
        epochs=args.student_epochs,
        lr=1e-3,
        backbone_lr_scale=0.1,
        freeze_backbone_epochs=1.0,
        ratio_weight=10.0,
        warmup_epochs=0.1,
        min_lr=1e-5,
        keep_rate=0.7,
        prune_layers=[1, 2, 3],
        **common,
    )  # the demo's student recipe
    tag = "" if args.student_epochs == 1 else f"-e{args.student_epochs}"
    fixed = train(TrainConfig(ratio_loss="image", out_dir=str(out / f"fixed{tag}"), **student))
    adaptive = train(TrainConfig(ratio_loss="batch", out_dir=str(out / f"adaptive{tag}"), **student))

    cfg = TrainConfig(**common)
    test_set = build_run_dataset(cfg, "test")
    held_out = build_run_dataset(TrainConfig(**{**common, "train_limit": args.calib_images, "seed": 1}), "train")
    results, models = {}, {}
    for name, model in (("fixed", fixed), ("adaptive", adaptive)):
        models[f"{name}-trained, fixed mode"] = model
        tuned = copy.deepcopy(model)
        results[f"{name}-trained, calibration"] = calibrate(tuned, held_out)
        models[f"{name}-trained, adaptive mode"] = tuned
    for name, model in models.items():
        r = evaluate(model, test_set)
        results[name] = {k: r[k] for k in ("top1", "gmacs", "kept_tokens", "per_image")}

    difficulty = [test_set.distractor_count(i) for i in range(len(test_set))]
    levels = sorted(set(difficulty))
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, style in (("adaptive-trained, adaptive mode", "o-"), ("fixed-trained, fixed mode", "s--")):
        per = np.array([sum(c) for c in kept_counts(models[name], test_set)])
        means = [per[np.array(difficulty) == lv].mean() for lv in levels]
        lo = [np.percentile(per[np.array(difficulty) == lv], 10) for lv in levels]
        hi = [np.percentile(per[np.array(difficulty) == lv], 90) for lv in levels]
        ax.plot(levels, means, style, label=name)
        ax.fill_between(levels, lo, hi, alpha=0.15)
        results[name]["kept_by_distractors"] = {str(lv): float(m) for lv, m in zip(levels, means, strict=True)}
    ax.set_xlabel("distractor fragments on the canvas")
    ax.set_ylabel("tokens kept, summed over 3 stages")
    ax.set_title("kept tokens per image (mean, p10–p90)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / f"kept_vs_difficulty{tag}.png", dpi=110)
    plt.close(fig)

    easy = [i for i, d in enumerate(difficulty) if d == 0][:3]
    hard = [i for i, d in enumerate(difficulty) if d == 6][:3]
    picks = easy + hard
    model = models["adaptive-trained, adaptive mode"]
    x = torch.stack([test_set[i][0] for i in picks])
    with torch.inference_mode():
        decisions = model.forward_with_decisions(x).decisions
    save_kept_token_grid(
        [test_set.render(i)[0] for i in picks],
        decisions,
        model.patch_embed.grid_size,
        model.patch_embed.patch_size,
        out / f"easy_hard{tag}.png",
        row_titles=[f"{difficulty[i]} distr., {FASHION_CLASSES[test_set[i][1]]}" for i in picks],
    )
    results["seconds"] = time.perf_counter() - start
    results["command"] = "python scripts/adaptive_budgets.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None
    )
    (out / f"results{tag}.json").write_text(json.dumps(results, indent=2))
    for name in models:
        r = results[name]
        print(f"{name:<34} top-1 {r['top1']:.2f}  GMACs {r['gmacs']:.4f}  kept {r['kept_tokens']}")
    print(f"written to {out} ({results['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
