"""The end-to-end demo: dense teacher → DynamicViT fine-tune → evaluation → report, on
Cluttered Fashion-MNIST, within minutes on a 2-core CPU.

The canvas (48×48) and clutter (two 9×9 fragments of other items) are chosen so a small ViT
with a convolutional stem (``dvit_tiny_fmnist``) learns a strong teacher in a few CPU minutes
while the item still covers only a third of the canvas: most tokens are uninformative, which
is what the predictor has to discover.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dynamicvit.bench.timing import time_callables
from dynamicvit.builder import load_trained
from dynamicvit.builder.data import build_run_dataset
from dynamicvit.config import RunConfig
from dynamicvit.core.files import atomic_write_text, folder_lock
from dynamicvit.core.flops import count_flops
from dynamicvit.core.predictor import random_selector
from dynamicvit.core.provenance import provenance
from dynamicvit.data.fashion import FASHION_CLASSES
from dynamicvit.draw.panels import save_kept_token_grid
from dynamicvit.experiments.item_overlap import kept_item_overlap
from dynamicvit.experiments.report import save_curves, write_html, write_markdown
from dynamicvit.experiments.shipped_teacher import shipped_teacher, unpack_teacher
from dynamicvit.methods.budget import knob_of, set_budget
from dynamicvit.methods.registry import apply_method
from dynamicvit.tasks.evaluate import evaluate
from dynamicvit.train.run_folder import check_report_folder
from dynamicvit.train.trainer import Trainer

__all__ = ["RIVALS", "STUDENT_RECIPE", "TEACHER_RECIPE", "DemoConfig", "run_demo", "teacher_config"]

# the demo's optimisation settings, shared with the leaderboards' proxies (dynamicvit.experiments.leaderboard)
TEACHER_RECIPE = {"lr": 2e-3, "warmup_epochs": 0.2, "min_lr": 1e-5}
RIVALS = ("tome", "evit")  # training-free methods shown beside the student at its MACs
STUDENT_RECIPE = {
    "lr": 1e-3,
    "backbone_lr_scale": 0.1,
    "ratio_weight": 10.0,  # with the paper's 2 the training masks drifted to ~90% kept on the demo canvases
    "warmup_epochs": 0.1,
    "min_lr": 1e-5,
}


@dataclass
class DemoConfig:
    out_dir: str = "runs/demo"
    data_dir: str | None = None
    canvas: int = 48
    distractors: int = 2
    depth: int = 6
    teacher_epochs: int = 4
    student_epochs: int = 2
    batch_size: int = 128
    keep_rate: float = 0.7
    prune_layers: tuple[int, ...] = (1, 2, 3)
    # DynamicViT's strongest variant on the leaderboard of the demo's canvases (docs/leaderboards): masks by
    # the top-k rule in training ("gumbel": the paper's rule), its exploration noise only in the predictor-only
    # epoch ("always": in the backbone's too), and predictors a quarter of the model's width (1: the paper's),
    # whose saved MACs go to kept tokens
    mask_rule: str = "topk"
    predictor_width: float = 0.25
    mask_noise: str = "frozen"
    train_limit: int | None = None
    val_limit: int | None = None
    bench_batch: int = 32
    bench_repeats: int = 20
    overlap_images: int = 1000  # test canvases on which kept tokens are checked against the item
    seed: int = 0  # the student's and the evaluations' (the teacher stands for a pretrained model: seed 0)
    progress: bool = True
    resume: bool = False  # reuse the finished runs of an earlier demo in out_dir, continue killed ones
    overwrite: bool = False  # start over in an out_dir that holds an earlier demo
    train_teacher: bool = False  # train the teacher here instead of starting from the one shipped with the package

    @classmethod
    def quick(cls, **overrides) -> DemoConfig:
        """Seconds-long smoke settings (tests): a few hundred images, one epoch each."""
        args = dict(
            teacher_epochs=1,
            student_epochs=1,
            batch_size=32,
            train_limit=256,
            val_limit=128,
            bench_batch=4,
            bench_repeats=2,
            overlap_images=64,
        )
        return cls(**{**args, **overrides})


OUTPUTS = ("report.md", "report.html", "curves.png", "kept_tokens.png", "summary.json")


def _train(cfg: RunConfig, demo: DemoConfig) -> tuple[Trainer, float]:
    """Train; with ``demo.resume`` pick up a finished or killed run of the same configuration in the same
    folder (a run of another configuration there is an error naming the differences)."""
    cfg.run.resume = demo.resume and (Path(cfg.run.out_dir) / "last.pth").exists()
    cfg.run.overwrite = demo.overwrite
    start = time.perf_counter()
    with Trainer(cfg, reuse_finished=True) as trainer:
        trainer.fit()
    return trainer, time.perf_counter() - start


def run_demo(cfg: DemoConfig, command: str = "dynamicvit demo") -> dict:
    """Run the whole demo into ``cfg.out_dir``, held for this process while it runs (see
    :func:`~dynamicvit.core.files.folder_lock`); a folder holding an earlier demo needs ``cfg.resume`` or
    ``cfg.overwrite``. Writes ``report.md``, ``curves.png``, ``kept_tokens.png``, ``summary.json``.
    """
    out = Path(cfg.out_dir)
    with folder_lock(out):
        check_report_folder(out, OUTPUTS, cfg.resume, cfg.overwrite)
        return _run(cfg, command)


def _common(demo: DemoConfig) -> dict:
    """The settings the demo's teacher and student share: model, data, batch, seed."""
    return dict(
        model="dvit_tiny_fmnist",
        model_kwargs={"depth": demo.depth},
        data="cluttered-fashion-mnist",
        data_dir=demo.data_dir,
        canvas=demo.canvas,
        distractors=demo.distractors,
        img_size=demo.canvas,
        batch_size=demo.batch_size,
        train_limit=demo.train_limit,
        val_limit=demo.val_limit,
        seed=demo.seed,
        progress=demo.progress,
    )


def teacher_config(demo: DemoConfig) -> RunConfig:
    """The run configuration of the demo's dense teacher (the shipped one was trained with the defaults'): one
    teacher, of seed 0, for the students of every seed, as a pretrained model would be."""
    out_dir = str(Path(demo.out_dir) / "teacher")
    common = {**_common(demo), "seed": 0}
    return RunConfig.of(dense=True, epochs=demo.teacher_epochs, **TEACHER_RECIPE, out_dir=out_dir, **common)


def _run(cfg: DemoConfig, command: str) -> dict:
    """The demo's recipe.

    Longer than 60 lines on purpose: it is the demo's recipe read top to bottom (teacher, student config, the
    evaluations and the report), mostly keyword arguments; split up further, a reader would have to jump
    between helpers to see one recipe.
    """
    start = time.perf_counter()
    out = Path(cfg.out_dir)
    common, teacher_cfg = _common(cfg), teacher_config(cfg)
    teacher, teacher_path, teacher_seconds, shipped = _teacher(teacher_cfg, cfg)
    student_cfg = RunConfig.of(
        dense=False,
        teacher_checkpoint=str(teacher_path),
        epochs=cfg.student_epochs,
        **STUDENT_RECIPE,
        # the paper's schedule in miniature: the predictors alone first (backbone frozen), then the backbone too
        freeze_backbone_epochs=1.0,
        keep_rate=cfg.keep_rate,
        mask_rule=cfg.mask_rule,
        predictor_width=cfg.predictor_width,
        mask_noise=cfg.mask_noise,
        prune_layers=list(cfg.prune_layers),
        out_dir=str(out / "sparse"),
        **common,
    )
    student_run, student_seconds = _train(student_cfg, cfg)
    teacher, student = teacher.eval(), student_run.model.eval()
    test_set = student_run.val_set

    results = {
        "dense": evaluate(teacher, test_set),
        "sparse": evaluate(student, test_set),
        "random": evaluate(student, test_set, decisions_fn=random_selector(cfg.seed)),
        **{rival: _rival_at_equal_macs(rival, teacher, student, test_set) for rival in RIVALS},
        "item_overlap": kept_item_overlap(student, test_set, count=cfg.overlap_images, seed=cfg.seed),
    }
    x = torch.stack([test_set[i][0] for i in range(min(cfg.bench_batch, len(test_set)))])
    secs = time_callables({"dense": teacher, "sparse": student}, x, warmup=2, repeats=cfg.bench_repeats)
    ips = {k: x.shape[0] / v for k, v in secs.items()}
    bench = {
        "batch_size": x.shape[0],
        "repeats": cfg.bench_repeats,
        "threads": torch.get_num_threads(),
        "img_per_s": ips,
        "speedup": ips["sparse"] / ips["dense"],
    }

    _save_pictures(student, test_set, out / "kept_tokens.png")
    save_curves({"dense teacher": out / "teacher", "DynamicViT": out / "sparse"}, out / "curves.png")
    summary = {
        **results,
        "bench": bench,
        "keep_rate": cfg.keep_rate,
        "mask_rule": cfg.mask_rule,
        "predictor_width": cfg.predictor_width,
        "mask_noise": cfg.mask_noise,
        "num_patches": student.patch_embed.num_patches,
        "data": f"Cluttered Fashion-MNIST, {cfg.canvas}×{cfg.canvas} canvas, {cfg.distractors} "
        f"distractor fragments, {len(student_run.train_set)} training / {len(test_set)} test images",
        "provenance": provenance(command),
        "teacher_seconds": teacher_seconds,
        "teacher_shipped": shipped,
        "student_seconds": student_seconds,
        "total_seconds": time.perf_counter() - start,
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    write_markdown(summary, out / "report.md")
    write_html(out / "report.md", out / "report.html")
    return summary


def _teacher(teacher_cfg: RunConfig, demo: DemoConfig) -> tuple[torch.nn.Module, Path, float, dict | None]:
    """The dense teacher, its checkpoint, the seconds spent training it here and, when it is the one shipped
    with the package (same recipe and data, ``--train-teacher`` not given), its record."""
    shipped = None if demo.train_teacher else shipped_teacher(teacher_cfg)
    if shipped is None:
        run, seconds = _train(teacher_cfg, demo)
        return run.model, Path(teacher_cfg.run.out_dir) / "last.pth", seconds, None
    build_run_dataset(teacher_cfg, "test")  # missing data is an error before anything is written
    folder = Path(teacher_cfg.run.out_dir)
    record = unpack_teacher(shipped, folder)  # its weights and curves where a run trained here leaves them
    model, _ = load_trained(folder / "last.pth")
    return model, folder / "last.pth", 0.0, {**record["provenance"], "train_seconds": record["train_seconds"]}


def _rival_at_equal_macs(method: str, teacher: torch.nn.Module, student: torch.nn.Module, test_set) -> dict:
    """A training-free rival (ToMe, EViT) on a copy of the teacher, its knob tuned to the student's MACs."""
    dense_macs = count_flops(teacher).total
    rival = apply_method(copy.deepcopy(teacher), method)
    fraction = set_budget(rival, count_flops(student).total / dense_macs, dense_macs)
    return {**evaluate(rival.eval(), test_set), **knob_of(rival), "macs_fraction": fraction}


def _save_pictures(model, dataset, path: Path, count: int = 6) -> None:
    images = [dataset.render(i)[0] if hasattr(dataset, "render") else dataset[i][0][0].numpy() for i in range(count)]
    x = torch.stack([dataset[i][0] for i in range(count)])
    with torch.inference_mode():
        decisions = model.forward_with_decisions(x).decisions
    labels = [dataset[i][1] for i in range(count)]
    save_kept_token_grid(
        [np.asarray(im) for im in images],
        decisions,
        model.patch_embed.grid_size,
        model.patch_embed.patch_size,
        path,
        row_titles=[FASHION_CLASSES[label] for label in labels],
    )
