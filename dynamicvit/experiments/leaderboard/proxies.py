"""The leaderboards' proxies: three token grids of Cluttered Fashion-MNIST, each with its converged teacher.

* ``demo`` – the demo's canvases: 48×48, one item and two distractors, 8-pixel patches (6×6 = 36 tokens);
* ``scale`` – 80×80 canvases whose item is resized by up to 2× either way (10×10 = 100 tokens);
* ``grid14`` – 112×112 canvases, three distractors, items 56 pixels wide on average (a quarter of the
  canvas's area) and resized by up to 1.5× either way (14×14 = 196 tokens, ImageNet's grid).

The model is the demo's ``dvit_tiny_fmnist`` (6 blocks, 96 wide), its blocks reduced before blocks 1, 2, 3.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from dynamicvit.config import RunConfig
from dynamicvit.data.cluttered import VAL_IMAGES
from dynamicvit.experiments.demo import STUDENT_RECIPE, TEACHER_RECIPE
from dynamicvit.experiments.teacher import TEACHER_FILE, train_converged

__all__ = ["PROXIES", "Proxy", "get_proxy", "proxy_config", "proxy_teacher"]

FASHION_TRAIN = 60_000


@dataclass(frozen=True)
class Proxy:
    """A leaderboard's data, sizes and schedule.

    Attributes:
        name: the proxy's name (``--proxy``).
        data: the cluttered-fashion-mnist fields of its canvases.
        train_images: the students' training canvases (one epoch).
        test_images: the test canvases every row is scored on.
        teacher_images: the teacher's training canvases.
        teacher_max_epochs: the teacher's cosine schedule (it stops earlier once converged).
        budgets: fractions of the dense MACs compared.
    """

    name: str
    data: dict = field(default_factory=dict)
    train_images: int = 20_000
    test_images: int = 10_000
    teacher_images: int = 50_000
    teacher_max_epochs: int = 30
    budgets: tuple[float, ...] = (0.5, 0.65)

    @property
    def grid(self) -> int:
        """Tokens per side (8-pixel patches)."""
        return self.data["img_size"] // 8


PROXIES: dict[str, Proxy] = {
    p.name: p
    for p in (
        Proxy("demo", {"canvas": 48, "img_size": 48, "distractors": 2}, budgets=(0.5, 0.65, 0.8)),
        Proxy("scale", {"canvas": 80, "img_size": 80, "distractors": 2, "item_scale": 2.0},
              train_images=10_000, teacher_images=30_000, teacher_max_epochs=24),
        Proxy("grid14", {"canvas": 112, "img_size": 112, "distractors": 3, "item_size": 56, "item_scale": 1.5},
              train_images=6_000, teacher_images=15_000, teacher_max_epochs=20),
    )
}  # fmt: skip
PATIENCE = 5  # epochs without a gain before a teacher counts as converged (at a high learning rate, noise)
QUICK = {"train_images": 64, "test_images": 32, "teacher_images": 64, "teacher_max_epochs": 2}


def get_proxy(name: str, quick: bool = False) -> Proxy:
    """The proxy ``name`` (with seconds-long sizes when ``quick``), or a one-line error listing them."""
    if name not in PROXIES:
        raise ValueError(f"unknown proxy {name!r}; choose one of {', '.join(PROXIES)}")
    return dataclasses.replace(PROXIES[name], **QUICK) if quick else PROXIES[name]


def proxy_config(proxy: Proxy, out: Path, teacher: Path, data_dir: str | None = None, quick: bool = False) -> RunConfig:
    """The shared recipe of a proxy's students (the demo's student recipe, one epoch) on ``teacher``."""
    assert proxy.train_images <= FASHION_TRAIN - VAL_IMAGES, "students must not train on the held-out canvases"
    return RunConfig.of(
        model="dvit_tiny_fmnist",
        model_kwargs={"depth": 6},
        data="cluttered-fashion-mnist",
        data_dir=data_dir,
        batch_size=32 if quick else 128,
        epochs=1,
        **STUDENT_RECIPE,
        freeze_backbone_epochs=0.0,
        prune_layers=[1, 2, 3],
        teacher_checkpoint=str(teacher),
        out_dir=str(out),
        progress=not quick,
        train_limit=proxy.train_images,
        val_limit=proxy.test_images,
        **proxy.data,
    )


def proxy_teacher(proxy: Proxy, out: Path, data_dir: str | None = None, quick: bool = False) -> dict:
    """Train (or resume, or reuse) the proxy's dense teacher in ``out / "teacher"`` until it converges.

    Returns:
        The teacher's curve summary (:func:`~dynamicvit.experiments.teacher.train_converged`).
    """
    folder = out / "teacher"
    cfg = proxy_config(proxy, folder, folder / TEACHER_FILE, data_dir, quick).replace(
        dense=True, teacher_checkpoint=None, **TEACHER_RECIPE, train_limit=proxy.teacher_images,
        val_limit=32 if quick else 1000,  # the trainer's own per-epoch check; convergence is judged on "val"
    )  # fmt: skip
    heldout = proxy.test_images if quick else 5000
    return train_converged(cfg, proxy.teacher_max_epochs, patience=1 if quick else PATIENCE, heldout=heldout)
