"""A dense teacher trained until its held-out top-1 stops rising, with the curve that shows it.

A comparison of token-reduction methods is only as good as the dense model they all start from: an
unfinished teacher lets one more epoch of fine-tuning move a student more than pruning does. The
teacher trains on a cosine schedule of at most ``max_epochs``; after every epoch it is scored on
held-out canvases (the data set's ``"val"`` split, never the test canvases), and training stops once
``patience`` epochs in a row failed to beat the best score by ``min_gain`` points. The best epoch's
weights are the teacher (the last training checkpoint is then removed). A killed run resumes from its last
epoch and its curve.
"""

from __future__ import annotations

import json
from pathlib import Path

from dynamicvit.builder import build_run_dataset
from dynamicvit.config import RunConfig
from dynamicvit.core.files import atomic_write_text
from dynamicvit.core.provenance import provenance
from dynamicvit.experiments.report import read_jsonl
from dynamicvit.tasks.evaluate import evaluate
from dynamicvit.train.trainer import Trainer
from dynamicvit.weights.checkpoint import save_checkpoint

__all__ = ["TEACHER_FILE", "converged", "train_converged"]

TEACHER_FILE = "teacher.pth"  # the best epoch's weights and config, beside ``curve.json``


def converged(curve: list[dict], patience: int, min_gain: float) -> bool:
    """Whether the last ``patience`` epochs of ``curve`` (``{"epoch", "val_top1"}`` records) all stayed
    below the best earlier score plus ``min_gain`` points.

    Args:
        curve: held-out top-1 per epoch, in order.
        patience: epochs without a gain before stopping.
        min_gain: the smallest rise (points) that counts as a gain.

    Returns:
        True when training should stop.
    """
    if len(curve) <= patience:
        return False
    before = max(r["val_top1"] for r in curve[:-patience])
    return all(r["val_top1"] < before + min_gain for r in curve[-patience:])


def train_converged(
    cfg: RunConfig, max_epochs: int, patience: int = 3, min_gain: float = 0.1, heldout: int = 5000
) -> dict:
    """Train the dense model ``cfg`` describes (its ``out_dir`` the run folder) until it converges.

    Args:
        cfg: a dense training recipe (``cfg.model.dense``); its ``epochs`` is replaced by ``max_epochs``.
        max_epochs: the cosine schedule's length and the most epochs trained.
        patience: epochs without a gain of ``min_gain`` points on the held-out canvases before stopping.
        min_gain: see ``patience``.
        heldout: held-out canvases scored after every epoch.

    Returns:
        ``{"curve", "best_epoch", "val_top1", "epochs", "max_epochs", "train_seconds", "path", "recipe",
        "provenance"}``, also written to the run folder's ``curve.json``; ``path`` is the best epoch's weights
        (:data:`TEACHER_FILE`).
    """
    if not cfg.model.dense:
        raise ValueError("train_converged trains a dense model; set dense=True")
    out = Path(cfg.run.out_dir)
    curve_file = out / "curve.json"
    curve = json.loads(curve_file.read_text())["curve"] if curve_file.exists() else []
    done = len(curve) >= max_epochs or converged(curve, patience, min_gain)
    if done and (out / TEACHER_FILE).exists():  # a finished teacher (perhaps a committed one): nothing to train
        return json.loads(curve_file.read_text())
    if curve and not (out / "last.pth").exists():  # an unfinished curve without its run cannot be continued
        print(f"{out}: the unfinished teacher's checkpoint is missing; training it from the start", flush=True)
        curve = []
    run = cfg.replace(epochs=max_epochs, resume=(out / "last.pth").exists())
    val_set = build_run_dataset(cfg.replace(val_limit=heldout), "val")
    with Trainer(run, reuse_finished=True) as trainer:
        while True:
            while len(curve) < trainer.epoch:  # an epoch saved but not yet scored (a killed run) first
                top1 = evaluate(trainer.eval_model, val_set, cfg)["top1"]
                if not curve or top1 > max(r["val_top1"] for r in curve):
                    save_checkpoint(trainer.eval_model, out / TEACHER_FILE, config=run.to_dict(),
                                    epoch=trainer.epoch)  # fmt: skip
                curve.append({"epoch": trainer.epoch, "val_top1": top1})
                _write(curve_file, curve, cfg, trainer.epoch, max_epochs)
            if trainer.epoch >= max_epochs or converged(curve, patience, min_gain):
                break
            trainer.fit(until_epoch=trainer.epoch + 1)
    (out / "last.pth").unlink()  # converged: the teacher is its best epoch's weights, nothing trains it further
    return json.loads(curve_file.read_text())


def _write(path: Path, curve: list[dict], cfg: RunConfig, epochs: int, max_epochs: int) -> None:
    best = max(curve, key=lambda r: r["val_top1"])
    trained = read_jsonl(path.parent / "metrics.jsonl")
    summary = {
        "curve": curve,
        "best_epoch": best["epoch"],
        "val_top1": best["val_top1"],
        "epochs": epochs,
        "max_epochs": max_epochs,
        "train_seconds": sum(r.get("train_seconds", 0.0) for r in trained if r["epoch"] <= epochs),
        "path": str(path.parent / TEACHER_FILE),
        "recipe": {k: v for k, v in cfg.to_dict().items() if k not in ("progress", "resume", "out_dir")},
        "provenance": provenance(),
    }
    atomic_write_text(path, json.dumps(summary, indent=2))
