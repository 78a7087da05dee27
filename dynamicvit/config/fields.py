"""The run configuration: one dataclass, saved in every checkpoint, from which the CLI's
``train``/``compare`` flags are generated (each field's ``help`` is its flag's help text).

Defaults follow DynamicViT's recipe for plain ViTs (arXiv 2106.02034: AdamW, weight decay 0.05,
cosine schedule with warm-up, backbone frozen for the first epochs); the values that differ by
backbone family (keep-ratio weight, backbone learning-rate scale) stay ``None`` until
:func:`with_family_defaults` fills them from the family registry.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields

from dynamicvit.core.keep import DEFAULT_KEEP_MODE, DEFAULT_MASK_RULE, KEEP_RULES, MASK_RULES
from dynamicvit.data.registry import DATASETS, DataOptions
from dynamicvit.methods.registry import METHODS
from dynamicvit.tasks.registry import TASKS

__all__ = ["SECTIONS", "TrainConfig", "field_flags", "field_kind", "flag", "section_of"]


def _opt(default, help: str, **cli):
    """A config field with its CLI help (and optional ``flags``, ``choices``)."""
    if isinstance(default, dict):
        return field(default_factory=dict, metadata={"help": help, **cli})
    return field(default=default, metadata={"help": help, **cli})


@dataclass
class TrainConfig:
    """Everything a run needs; saved in each checkpoint."""

    model: str = _opt(
        "dvit_tiny_fmnist",
        "timm model name: the dense teacher and the student's backbone",
        flags=("--model", "--teacher"),
    )
    dense: bool = _opt(False, "train the dense model itself (e.g. to make a teacher offline)")
    task: str = _opt(
        "classify",
        "; ".join(f"{t.name}: {t.help}" for t in TASKS.values()),
        choices=TASKS,  # the registry itself: a task registered later is a valid choice
    )
    method: str = _opt("dynamicvit", "token reduction to train (baselines train with CE + KL)", choices=tuple(METHODS))
    tome_r: float = _opt(8.0, "tokens merged per block (methods tome and mctf); a fraction is spread over the blocks")
    pretrained: bool = _opt(False, "start from timm's pretrained weights")
    teacher_checkpoint: str | None = _opt(None, "dense checkpoint for the teacher and the student's backbone")
    model_kwargs: dict = _opt({}, "extra timm kwargs as JSON, e.g. '{\"drop_path_rate\": 0.1}'")
    data: str = _opt(
        "cluttered-fashion-mnist",
        "data set (the task each serves: " + ", ".join(f"{d.name} {d.task}" for d in DATASETS.values()) + ")",
        choices=DATASETS,
    )
    data_dir: str | None = _opt(None, "data folder (default: /usr/share/datasets/fashion-mnist)")
    canvas: int = _opt(64, "cluttered-fashion-mnist canvas side")
    distractors: int = _opt(4, "cluttered-fashion-mnist fragments per canvas")
    distractors_max: int | None = _opt(
        None, "cluttered-fashion-mnist: a random count in [--distractors, this] per canvas (difficulty varies)"
    )
    item_scale: float = _opt(
        1.0, "cluttered-fashion-mnist: each item resized by a factor in [1/this, this] (log-uniform; size varies)"
    )
    item_size: int = _opt(
        28, "cluttered-fashion-mnist: the item's side in pixels before --item-scale (Fashion-MNIST's own 28)"
    )
    scene_items: int = _opt(3, "cluttered-fashion-scenes/-boxes: items per scene")
    scene_items_max: int | None = _opt(
        None, "cluttered-fashion-scenes/-boxes: a random count in [--scene-items, this] per scene (content varies)"
    )
    img_size: int | None = _opt(None, "input resolution (default: the model's)")
    aa: str | None = _opt(
        None, "image data (imagefolder, wds, hfds): timm auto-augment policy, e.g. rand-m9-mstd0.5-inc1 (RandAugment)"
    )
    reprob: float = _opt(0.0, "image data: random erasing probability (timm RandomErasing)")
    color_jitter: float = _opt(0.4, "image data: colour jitter strength (timm create_transform)")
    interpolation: str = _opt(
        "bilinear", "image data: training resize interpolation", choices=("bilinear", "bicubic", "random")
    )
    train_limit: int | None = _opt(None, "use only the first N training images")
    val_limit: int | None = _opt(None, "use only the first N test images")
    epochs: int = _opt(30, "training epochs")
    batch_size: int = _opt(64, "images per step and process")
    accum_steps: int = _opt(
        1, "optimiser step every N batches, gradients summed (the release's update_freq); the schedule counts steps"
    )
    lr: float = _opt(1e-3, "peak learning rate of the new modules (the whole model with --dense)")
    backbone_lr_scale: float | None = _opt(None, "backbone lr relative to --lr (default: the family's, ViT 0.01)")
    freeze_backbone_epochs: float = _opt(5, "no backbone updates before this epoch (fractions allowed)")
    freeze_prefix: bool = _opt(
        False,
        "never train the layers before the first pruning stage (DynamicViT on a ViT): the teacher then reuses "
        "the student's tokens there, a cheaper step",
    )
    warmup_epochs: float = _opt(5, "linear warm-up epochs (fractions allowed)")
    min_lr: float = _opt(1e-6, "learning rate at the end of the cosine schedule")
    weight_decay: float = _opt(0.05, "AdamW weight decay (none on biases and norms)")
    keep_rate: float = _opt(0.7, "keep ratio rho in (0, 1]")
    prune_layers: list[int] | None = _opt(None, "blocks before which tokens are reduced (default: the family's)")
    ratio_weight: float | None = _opt(None, "keep-ratio loss weight (default: the family's, ViT 2, ConvNeXt/Swin 10)")
    no_labels: bool = _opt(
        False,
        "train from the dense model alone: distillation and keep-ratio terms, no cross-entropy "
        "(any folder of images: --data images)",
    )
    ratio_loss: str = _opt(
        "image",
        "keep-ratio term on each image's kept fraction (the paper) or on the batch average (per-image budgets)",
        choices=("image", "batch"),
    )
    keep_mode: str = _opt(
        DEFAULT_KEEP_MODE,
        "; ".join(f"{name}: {rule.help}" for name, rule in KEEP_RULES.items()),
        choices=KEEP_RULES,  # the registry itself: a rule registered later is a valid choice
    )
    merge_dropped: bool = _opt(
        False,
        "DynamicViT: merge each dropped token into its most similar kept token (proportional attention) "
        "instead of discarding it",
    )
    attention_prior: bool = _opt(
        False,
        "DynamicViT on plain ViTs: each stage decides inside its block after the attention and adds a learned "
        "multiple of the log attention each patch receives to the predictor's score (it starts as Top-K)",
    )
    mask_rule: str = _opt(
        DEFAULT_MASK_RULE,
        "training mask: " + "; ".join(f"{name}: {rule.help}" for name, rule in MASK_RULES.items()),
        choices=MASK_RULES,
    )
    thresholds: list[float] | None = _opt(None, "threshold keep mode: the per-stage keep-probability thresholds")
    distill_weight: float = _opt(0.5, "weight of the KL distillation from the dense model")
    token_weight: float = _opt(0.5, "weight of the kept-token MSE (ViTs: hierarchical maps have no token subset)")
    mixup: float = _opt(0.0, "mixup alpha (timm Mixup)")
    cutmix: float = _opt(0.0, "cutmix alpha (timm Mixup)")
    smoothing: float = _opt(0.0, "label smoothing")
    ema_decay: float | None = _opt(None, "keep an EMA of the weights (timm ModelEmaV3) with this decay")
    clip_grad: float | None = _opt(None, "clip the gradient norm to this value")
    amp: bool = _opt(False, "autocast: bf16 on CPU, fp16 + grad scaler on CUDA")
    channels_last: bool = _opt(False, "channels-last memory format for model and images (convolutional backbones)")
    compile: bool = _opt(False, "torch.compile the model to train (the first steps compile)")
    seed: int = _opt(0, "random seed (data order, initialisation, Gumbel noise)")
    workers: int = _opt(0, "data loader worker processes")
    out_dir: str = _opt("runs/train", "run folder (checkpoints, metrics)", flags=("--out",))
    resume: bool = _opt(False, "continue the run in --out from its last.pth (its saved config must match)")
    overwrite: bool = _opt(False, "start over in an --out that holds a run (its files are replaced)")
    max_bad_steps: int = _opt(10, "stop after this many non-finite losses in a row")
    deterministic: bool = _opt(False, "torch deterministic algorithms")
    progress: bool = _opt(True, "hide the progress bar", flags=("--no-progress",))

    def __post_init__(self) -> None:
        self.keep_mode = KEEP_RULES.canonical(self.keep_mode)  # a former rule name (saved configs) reads as today's

    def data_options(self, split: str) -> DataOptions:
        """The data section for ``split`` (``"train"`` or a test split): the :class:`DataOptions` fields of this
        config, read by name, with the split's image limit and the default 224-pixel side."""
        values = {f.name: getattr(self, f.name) for f in fields(DataOptions) if hasattr(self, f.name)}
        limit = self.train_limit if split == "train" else self.val_limit
        return DataOptions(**{**values, "img_size": self.img_size or 224, "limit": limit})

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def field_kind(f: dataclasses.Field) -> str:
    """The type of a config field as written, without ``| None``: ``int``, ``float``, ``list[int]``, ``dict``, ..."""
    return str(f.type).removesuffix(" | None")


def field_flags(f: dataclasses.Field) -> tuple[str, ...]:
    """The CLI flags of a config field: its ``flags``, else ``--val-limit`` for ``val_limit``."""
    return f.metadata.get("flags", ("--" + f.name.replace("_", "-"),))


def flag(name: str) -> str:
    """The (first) CLI flag of the config field ``name``, for error messages."""
    return field_flags(next(f for f in fields(TrainConfig) if f.name == name))[0]


# what each field is about: the command line's argument groups (and the order a reader meets them in)
SECTIONS: dict[str, tuple[str, ...]] = {
    "model": ("model", "dense", "task", "method", "tome_r", "pretrained", "teacher_checkpoint", "model_kwargs"),
    "data": (
        "data", "data_dir", "canvas", "distractors", "distractors_max", "item_scale", "item_size", "scene_items",
        "scene_items_max", "img_size", "train_limit", "val_limit", "aa", "reprob", "color_jitter",
        "interpolation", "mixup", "cutmix", "smoothing",
    ),
    "schedule": (
        "epochs", "batch_size", "accum_steps", "lr", "backbone_lr_scale", "freeze_backbone_epochs",
        "freeze_prefix", "warmup_epochs", "min_lr", "weight_decay", "ema_decay", "clip_grad",
    ),
    "budget": ("keep_rate", "prune_layers", "keep_mode", "thresholds", "merge_dropped", "attention_prior"),
    "loss": ("ratio_weight", "ratio_loss", "mask_rule", "no_labels", "distill_weight", "token_weight"),
    "run": (
        "seed", "out_dir", "resume", "overwrite", "amp", "channels_last", "compile", "workers", "max_bad_steps",
        "deterministic", "progress",
    ),
}  # fmt: skip


def section_of(name: str) -> str:
    """The section (:data:`SECTIONS`) of the config field ``name``."""
    return next(section for section, names in SECTIONS.items() if name in names)
