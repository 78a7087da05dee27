"""The training configuration: one dataclass, saved in every checkpoint, from which the CLI's
``train``/``compare`` flags are generated (each field's ``help`` is its flag's help text).

Defaults follow DynamicViT's recipe for plain ViTs (arXiv 2106.02034: AdamW, weight decay 0.05,
cosine schedule with warm-up, backbone frozen for the first epochs); the values that differ by
backbone family (keep-ratio weight, backbone learning-rate scale) stay ``None`` until
:func:`with_family_defaults` fills them from the family registry.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import timm
from torch import nn

from dynamicvit.core.files import CheckpointError
from dynamicvit.core.interfaces import FAMILY_DEFAULTED, KEEP_MODES, backbone_of
from dynamicvit.data.registry import DATASETS, get_dataset
from dynamicvit.data.transforms import check_auto_augment
from dynamicvit.methods.registry import METHODS
from dynamicvit.models.registry import family_of
from dynamicvit.tasks.registry import TASKS, get_task
from dynamicvit.weights.zoo import ZOO

__all__ = [
    "RESUMABLE_CHANGES",
    "check_resumable",
    "trusted_config",
    "TrainConfig",
    "check_teacher",
    "config_yaml",
    "field_flags",
    "field_kind",
    "flag",
    "read_recipe",
    "validate",
    "with_family_defaults",
]


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
    tome_r: int = _opt(8, "ToMe's tokens merged per block (method tome)")
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
        "fixed",
        "the schedule's count for every image (fixed), per-image counts by a threshold at inference (adaptive), "
        "or per-image counts from budget predictors trained with the model (learned; with --ratio-loss batch)",
        choices=KEEP_MODES,
    )
    thresholds: list[float] | None = _opt(None, "adaptive keep mode: per-stage keep-probability thresholds (calibrate)")
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

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


MAX_WORKERS, MAX_SIDE, MAX_SCENE_ITEMS = (
    256,
    8192,
    64,
)  # bounds that also keep a foreign checkpoint's config from exhausting a machine
# timm.create_model arguments that load files, reach the network or change what is built beyond the
# architecture: refused in a config read from a checkpoint
_UNSAFE_MODEL_KWARGS = frozenset(
    {
        "checkpoint_path",
        "pretrained",
        "pretrained_cfg",
        "pretrained_cfg_overlay",
        "pretrained_strict",
        "cache_dir",
        "features_only",
        "scriptable",
        "exportable",
    }
)

# (field, test, what it must be): checked before any work, the error names the flag
_RULES = (
    ("epochs", lambda v: v >= 1, "at least 1"),
    ("batch_size", lambda v: v >= 1, "at least 1"),
    ("lr", lambda v: v > 0, "positive"),
    ("min_lr", lambda v: v >= 0, "0 or more"),
    ("warmup_epochs", lambda v: v >= 0, "0 or more"),
    ("freeze_backbone_epochs", lambda v: v >= 0, "0 or more"),
    ("weight_decay", lambda v: v >= 0, "0 or more"),
    ("keep_rate", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("tome_r", lambda v: v >= 0, "0 or more"),
    ("canvas", lambda v: 28 <= v <= MAX_SIDE, f"28 (a Fashion-MNIST item is 28x28) to {MAX_SIDE}"),
    ("distractors", lambda v: v >= 0, "0 or more"),
    ("distractors_max", lambda v: v >= 0, "0 or more"),
    ("item_scale", lambda v: 1 <= v <= 4, "in [1, 4]"),
    ("scene_items", lambda v: 1 <= v <= MAX_SCENE_ITEMS, f"1 to {MAX_SCENE_ITEMS}"),
    ("scene_items_max", lambda v: 1 <= v <= MAX_SCENE_ITEMS, f"1 to {MAX_SCENE_ITEMS}"),
    ("img_size", lambda v: 1 <= v <= MAX_SIDE, f"1 to {MAX_SIDE} pixels"),
    ("train_limit", lambda v: v >= 1, "a positive number of images"),
    ("val_limit", lambda v: v >= 1, "a positive number of images"),
    ("mixup", lambda v: v >= 0, "0 or more"),
    ("cutmix", lambda v: v >= 0, "0 or more"),
    ("smoothing", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("ema_decay", lambda v: 0 < v < 1, "in (0, 1)"),
    ("clip_grad", lambda v: v > 0, "positive"),
    ("workers", lambda v: 0 <= v <= MAX_WORKERS, f"0 to {MAX_WORKERS}"),
    ("accum_steps", lambda v: 1 <= v <= 1024, "1 to 1024"),
    ("reprob", lambda v: 0 <= v <= 1, "in [0, 1]"),
    ("color_jitter", lambda v: v >= 0, "0 or more"),
    ("max_bad_steps", lambda v: v >= 1, "at least 1"),
    ("ratio_weight", lambda v: v >= 0, "0 or more"),
    ("distill_weight", lambda v: v >= 0, "0 or more"),
    ("token_weight", lambda v: v >= 0, "0 or more"),
    ("backbone_lr_scale", lambda v: v >= 0, "0 or more"),
)


def field_kind(f: dataclasses.Field) -> str:
    """The type of a config field as written, without ``| None``: ``int``, ``float``, ``list[int]``, ``dict``, ..."""
    return str(f.type).removesuffix(" | None")


def field_flags(f: dataclasses.Field) -> tuple[str, ...]:
    """The CLI flags of a config field: its ``flags``, else ``--val-limit`` for ``val_limit``."""
    return f.metadata.get("flags", ("--" + f.name.replace("_", "-"),))


def flag(name: str) -> str:
    """The (first) CLI flag of the config field ``name``, for error messages."""
    return field_flags(next(f for f in fields(TrainConfig) if f.name == name))[0]


def validate(cfg: TrainConfig, training: bool = True) -> TrainConfig:
    """Raise a ``ValueError`` naming the flag of the first value out of range; return ``cfg``.
    With ``training`` also check that a sparse run has a teacher to distil from."""
    for name, ok, what in _RULES:
        value = getattr(cfg, name)
        if value is not None and not ok(value):
            raise ValueError(f"{flag(name)} must be {what}, got {value}")
    task = get_task(cfg.task)
    if cfg.method not in METHODS:
        raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {cfg.method!r}")
    if cfg.distractors_max is not None and cfg.distractors_max < cfg.distractors:
        raise ValueError(
            f"--distractors-max must be at least --distractors ({cfg.distractors}), got {cfg.distractors_max}"
        )
    if cfg.scene_items_max is not None and cfg.scene_items_max < cfg.scene_items:
        raise ValueError(
            f"--scene-items-max must be at least --scene-items ({cfg.scene_items}), got {cfg.scene_items_max}"
        )
    if round(28 * cfg.item_scale) > cfg.canvas:
        raise ValueError(f"--item-scale {cfg.item_scale} makes items up to {round(28 * cfg.item_scale)} pixels: "
                         f"more than the {cfg.canvas}-pixel --canvas")  # fmt: skip
    if cfg.aa is not None:
        check_auto_augment(cfg.aa)
    if cfg.thresholds is not None and any(not 0 < t < 1 for t in cfg.thresholds):
        raise ValueError(f"--thresholds must lie in (0, 1) (keep probabilities), got {cfg.thresholds}")
    if cfg.no_labels and cfg.dense:
        raise ValueError("--no-labels trains a sparse model from a dense one; --dense training needs labels")
    if cfg.no_labels and not task.learns_without_labels:
        raise ValueError(f"--no-labels does not apply to --task {task.name} (it learns from its targets)")
    if cfg.freeze_prefix and (cfg.dense or cfg.method != "dynamicvit"):
        raise ValueError("--freeze-prefix applies to DynamicViT training (--method dynamicvit, not --dense)")
    if training and not get_dataset(cfg.data).labelled and not cfg.no_labels:
        raise ValueError(f"--data {cfg.data} has no labels: pass --no-labels (distil from the dense model alone)")
    if training and cfg.keep_mode == "learned" and not cfg.dense and cfg.ratio_loss != "batch":
        raise ValueError(
            "--keep-mode learned trains each image's own budget: the keep-ratio term must act on the batch "
            "average (add --ratio-loss batch)"
        )
    if training:
        check_teacher(cfg)
    return cfg


def trusted_config(saved: Any, source: object) -> dict:
    """The config dict a checkpoint file carries, checked before anything is built from it: only known
    fields of plain values; a model name timm or this package registers (no ``hf-hub:`` / ``local-dir:``
    sources); ``model_kwargs`` of plain architecture values, none that loads files or reaches the network.
    The numeric bounds are :func:`validate`'s. A ``ValueError`` names the entry and ``source``."""
    if not isinstance(saved, dict):
        return {}
    known = {f.name for f in fields(TrainConfig)}
    config = {k: v for k, v in saved.items() if k in known}
    for key, value in config.items():
        if not _plain(value):
            raise ValueError(f"{source}: config entry {key!r} is not a plain value")
    model = config.get("model")
    if model is not None and (not isinstance(model, str) or ":" in model or not _registered(model)):
        raise ValueError(f"{source}: config names model {model!r}, which timm and dynamicvit do not register")
    kwargs = config.get("model_kwargs", {})
    nested = isinstance(kwargs, dict) and any(isinstance(v, dict) for v in kwargs.values())
    if not isinstance(kwargs, dict) or set(kwargs) & _UNSAFE_MODEL_KWARGS or nested:
        raise ValueError(f"{source}: config model_kwargs {kwargs!r} hold more than architecture values")
    return config


def _plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return value is None or isinstance(value, (bool, int, float, str))


def _registered(name: str) -> bool:
    return name in ZOO or timm.is_model(name)


def check_teacher(cfg: TrainConfig) -> None:
    """Raise unless a sparse run has a dense model to distil from (and its checkpoint file exists)."""
    if not cfg.dense and not (cfg.pretrained or cfg.teacher_checkpoint):
        raise ValueError(
            "sparse training distils from a trained dense model: pass --pretrained or "
            "--teacher-checkpoint (make one with `dynamicvit train --dense`)"
        )
    if cfg.teacher_checkpoint and not Path(cfg.teacher_checkpoint).is_file():
        raise ValueError(f"--teacher-checkpoint {cfg.teacher_checkpoint}: no such file")


def with_family_defaults(cfg: TrainConfig, model: nn.Module) -> TrainConfig:
    """``cfg`` with the recipe values left unset filled from the model's family."""
    family = family_of(backbone_of(model))
    return dataclasses.replace(
        cfg,
        ratio_weight=family.ratio_weight if cfg.ratio_weight is None else cfg.ratio_weight,
        backbone_lr_scale=family.backbone_lr_scale if cfg.backbone_lr_scale is None else cfg.backbone_lr_scale,
    )


# Config fields that may differ when a run is resumed: more epochs re-plan the cosine schedule
# from the current update on; the others do not change what is computed.
RESUMABLE_CHANGES = frozenset(
    {"epochs", "resume", "overwrite", "progress", "workers", "out_dir", "data_dir", "max_bad_steps", "compile"}
)


def check_resumable(state: dict, cfg: TrainConfig, path) -> None:
    """Raise unless ``state`` is a training checkpoint whose saved config matches ``cfg`` (fields left
    ``None`` in ``cfg`` take the saved value, as they would from the family defaults; fields the saved
    config lacks, added to :class:`TrainConfig` after it was written, count as their defaults)."""
    keys = set(state) if isinstance(state, dict) else set()
    missing = {"model", "optimizer", "scheduler", "epoch", "rng", "config"} - keys
    if missing:
        raise CheckpointError(f"--resume: {path} is not a training checkpoint (no {sorted(missing)})")
    # a field the checkpoint lacks is newer than it: the run behaved as the field's default says
    now, saved = asdict(cfg), {**asdict(TrainConfig()), **state["config"]}
    changed = [
        f"{k} {saved[k]!r} -> {v!r}"
        for k, v in now.items()
        if k not in RESUMABLE_CHANGES and v != saved[k] and not (v is None and k in FAMILY_DEFAULTED)
    ]
    if changed:
        raise ValueError(
            f"{path} was written with another configuration ({'; '.join(changed)}); resume with the same "
            "settings (only epochs may grow), or start a new run with another --out or --overwrite"
        )


def read_recipe(path: str | Path) -> dict:
    """The :class:`TrainConfig` fields a YAML recipe sets (``dynamicvit train --config FILE``), each value
    converted to its field's type. A ``ValueError`` names the file and the first key that is no config field
    or holds a value of the wrong kind."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config {path}: no such file")
    try:
        values = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"--config {path}: not YAML ({str(err).splitlines()[0]})") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"--config {path}: a recipe is a mapping of config fields to values")
    known = {f.name: f for f in fields(TrainConfig)}
    out = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise ValueError(f"--config {path}: {key!r} is no config field (the fields are `train --help`'s flags)")
        out[name] = _typed(known[name], value, f"--config {path}: {key}")
    return out


def _typed(f: dataclasses.Field, value: Any, where: str) -> Any:
    """``value`` as the type of field ``f`` (YAML reads ``1e-3`` as a string, ``5`` as an int for a float)."""
    kind = field_kind(f)
    if value is None:
        if kind != str(f.type):
            return None
        raise ValueError(f"{where} cannot be empty")
    scalar = {"int": int, "float": float, "str": str, "bool": bool}
    try:
        if kind.startswith("list["):
            item = scalar[kind[5:-1]]
            if not isinstance(value, list):
                raise TypeError
            return [_scalar(item, v) for v in value]
        if kind == "dict":
            if not isinstance(value, dict):
                raise TypeError
            return value
        return _scalar(scalar[kind], value)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must be {kind}, got {value!r}") from None


def _scalar(kind: type, value: Any) -> Any:
    if kind is bool or isinstance(value, bool):
        if not isinstance(value, bool) or kind is not bool:
            raise TypeError
        return value
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise TypeError
        return int(value)
    if kind is float:
        return float(value)
    if not isinstance(value, str):
        raise TypeError
    return value


def config_yaml(cfg: TrainConfig) -> str:
    """``cfg`` as a YAML recipe (what ``--dry-run`` prints; :func:`read_recipe` reads it back)."""
    import yaml

    return yaml.safe_dump(asdict(cfg), sort_keys=False)
