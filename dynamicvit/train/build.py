"""Factories a run needs: its data sets, its dense model, its reduced student and teacher, and the
model of a saved checkpoint, all from a :class:`dynamicvit.train.config.TrainConfig`."""

from __future__ import annotations

import copy
import dataclasses
import functools
import os

import torch
from torch import nn
from torch.utils.data import Dataset

from dynamicvit.core.interfaces import backbone_of, find_reducer
from dynamicvit.core.losses import is_encoder
from dynamicvit.data.registry import DATASETS, build_dataset, image_shape
from dynamicvit.methods.registry import apply_method, get_method
from dynamicvit.models.registry import build_timm_model
from dynamicvit.tasks.base import Task
from dynamicvit.tasks.registry import DEFAULT_TASK, get_task
from dynamicvit.train.config import TrainConfig, check_teacher, trusted_config, validate, with_family_defaults
from dynamicvit.weights.checkpoint import (
    infer_timm_kwargs,
    is_added_key,
    load_checkpoint,
    read_checkpoint,
    read_state_dict,
)
from dynamicvit.weights.zoo import ZOO, resolve

__all__ = [
    "build_dense",
    "build_dense_for_data",
    "build_run_dataset",
    "build_teacher_student",
    "dataset_task",
    "load_trained",
    "param_groups",
    "reduce",
    "resolve_config",
    "set_keep_mode",
    "build_untrained",
]


def build_run_dataset(cfg: TrainConfig, split: str) -> Dataset:
    """The run's train or test set, as its config describes it."""
    return build_dataset(
        cfg.data,
        split,
        data_dir=cfg.data_dir,
        img_size=cfg.img_size or 224,
        seed=cfg.seed,
        limit=cfg.train_limit if split == "train" else cfg.val_limit,
        canvas=cfg.canvas,
        distractors=cfg.distractors,
        distractors_max=cfg.distractors_max,
        item_scale=cfg.item_scale,
        scene_items=cfg.scene_items,
        scene_items_max=cfg.scene_items_max,
        aa=cfg.aa,
        reprob=cfg.reprob,
        color_jitter=cfg.color_jitter,
        interpolation=cfg.interpolation,
    )


def build_dense(
    cfg: TrainConfig,
    num_classes: int | None,
    in_chans: int,
    input_size: tuple[int, int, int] | None = None,
    pretrained: bool = False,
) -> nn.Module:
    """The run's dense model: a timm classifier, or for ``task="segment"`` / ``"detect"`` a segmenter /
    FCOS detector on the timm backbone, taking ``input_size`` (C, H, W) images."""
    kwargs = {"in_chans": in_chans, **cfg.model_kwargs}
    if num_classes is not None and "num_classes" not in kwargs:  # None: the model's (pretrained) classes
        kwargs["num_classes"] = num_classes  # --model-kwargs '{"num_classes": 0}' gives an encoder
    if cfg.img_size is not None:
        kwargs["img_size"] = cfg.img_size
    make = functools.partial(build_timm_model, pretrained=pretrained)
    return get_task(cfg.task).build_dense(make, cfg.model, num_classes, input_size, **kwargs)


def build_dense_for_data(cfg: TrainConfig, dataset, pretrained: bool = False) -> nn.Module:
    """:func:`build_dense` with classes, channels and (dense prediction) input size from ``dataset``;
    the teacher checkpoint loaded when the config names one."""
    task, found = get_task(cfg.task), dataset_task(dataset)
    if found is not task:
        raise ValueError(
            f"--task {cfg.task} needs --data {' or '.join(data_for(task))}; --data {cfg.data} is a {found.name} set "
            f"(--task {found.name})"
        )
    if not task.mixes_labels and (cfg.mixup or cfg.cutmix):
        raise ValueError(f"--task {cfg.task} takes no --mixup / --cutmix (they mix class labels)")
    shape = image_shape(dataset)
    size = shape if task.fixed_input_size else None
    classes = dataset.num_classes
    if classes is None and cfg.teacher_checkpoint:
        classes = infer_timm_kwargs(read_state_dict(cfg.teacher_checkpoint))["num_classes"]
    model = build_dense(cfg, classes, dataset.in_chans, size, pretrained)
    _check_image_size(model, cfg, shape[-2:])
    if cfg.dense and is_encoder(model):
        raise ValueError("an encoder without classifier (num_classes 0) has no labels to learn from: train it sparse")
    if cfg.teacher_checkpoint:
        load_checkpoint(model, _trunk(model, read_state_dict(cfg.teacher_checkpoint)))
    return model


def data_for(task: Task) -> list[str]:
    """The registered data sets that serve ``task``."""
    return [d.name for d in DATASETS.values() if d.task == task.name]


def dataset_task(dataset) -> Task:
    """The task a data set serves (its ``task`` attribute; classification when it has none)."""
    return get_task(getattr(dataset, "task", DEFAULT_TASK))


def _check_image_size(model: nn.Module, cfg: TrainConfig, size: tuple[int, int]) -> None:
    """Before any training: a model built for a fixed input size must get the data set's size."""
    embed = getattr(model, "patch_embed", None)
    built = getattr(embed, "img_size", None)
    if built is not None and getattr(embed, "strict_img_size", False) and tuple(built) != size:
        raise ValueError(
            f"{cfg.model} is built for {built[0]}x{built[1]} images but the data set's are {size[0]}x{size[1]}; "
            f"pass --img-size {size[0]} (or data of the model's size, e.g. --canvas {built[0]})"
        )


def reduce(model: nn.Module, cfg: TrainConfig, **options) -> nn.Module:
    """The run's student: ``model`` reduced by ``cfg.method`` at ``cfg.keep_rate`` (or ToMe's r); a segmenter's
    or detector's backbone is reduced in place."""
    target = backbone_of(model)
    reduced = apply_method(
        target, cfg.method, keep_rate=cfg.keep_rate, prune_layers=cfg.prune_layers, r=cfg.tome_r, **options
    )
    if cfg.keep_mode == "learned":  # trained with its budget predictors, not only run with them
        set_keep_mode(reduced, "learned")
    return model if target is not model else reduced


def build_teacher_student(cfg: TrainConfig, dataset) -> tuple[nn.Module, nn.Module | None]:
    """(model to train, frozen dense teacher or ``None`` for dense training). The student's class
    and position tokens stay frozen, as in the paper's recipe (with ``freeze_prefix``, all that runs before
    the first pruning stage)."""
    check_teacher(cfg)
    base = build_dense_for_data(cfg, dataset, pretrained=cfg.pretrained)
    if cfg.dense:
        return base, None
    teacher = copy.deepcopy(base)
    student = reduce(base, cfg)
    for name in ("cls_token", "pos_embed", "dist_token", "reg_token"):
        if isinstance(getattr(student, name, None), nn.Parameter):
            getattr(student, name).requires_grad_(False)
    if cfg.freeze_prefix:
        if not getattr(student, "shares_prefix", False):
            raise ValueError(
                f"--freeze-prefix needs DynamicViT on a timm ViT; {cfg.model} here is {type(student).__name__}"
            )
        student.freeze_prefix()
    return student, teacher.eval()


def resolve_config(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` checked as the trainer checks it and with its family defaults filled, without reading data or
    weights: the model is built and reduced on the ``meta`` device (no memory, no initialisation work), so a
    model, method or keep schedule that does not fit is reported here (``train --dry-run``)."""
    validate(cfg)
    side = cfg.img_size or cfg.canvas
    with torch.device("meta"):
        model = build_dense(cfg, None, 3, (3, side, side))
        if not cfg.dense:
            model = reduce(model, cfg)
    return with_family_defaults(cfg, model)


def load_trained(source: str | os.PathLike | dict, ema: bool = True, **overrides) -> tuple[nn.Module, TrainConfig]:
    """The eval-mode model of a training checkpoint (a file, or the object read from one), rebuilt from its
    saved config (``overrides`` on top; classes and channels read off the weights), and that config.

    One rule for every command: a checkpoint with EMA weights (``--ema-decay``) gives its EMA
    weights – what training validated – unless ``ema=False`` asks for the raw ones. A file without a
    saved config (e.g. the release's) is read with ``overrides["model"]``, a timm or zoo name."""
    state = source if isinstance(source, dict) else read_checkpoint(source)
    origin = "the checkpoint" if isinstance(source, dict) else source
    saved = trusted_config(state.get("config") if isinstance(state, dict) else None, origin)
    cfg, options = _resolved({**saved, **overrides}, overrides.get("keep_rate"))
    use_ema = ema and isinstance(state, dict) and isinstance(state.get("ema"), dict)
    weights = read_state_dict(state["ema"] if use_ema else state)
    found = infer_timm_kwargs(weights)
    chans, side = found["in_chans"], cfg.img_size or cfg.canvas
    size = (chans, side, side) if get_task(cfg.task).fixed_input_size else None
    model = build_dense(cfg, found["num_classes"], chans, size)
    # a learned method's modules show in the weights; the others are known from the config alone
    if any(is_added_key(k) for k in weights) or (not cfg.dense and not get_method(cfg.method).learned):
        model = reduce(model, cfg, **options)
    reducer = find_reducer(model)
    if reducer is not None and any("budget_predictor" in k.split(".") for k in weights):
        reducer.add_budget_predictors()  # trained in the learned mode; runs in any mode
    load_checkpoint(model, _trunk(model, weights))
    set_keep_mode(model, cfg.keep_mode, cfg.thresholds)
    return model.eval(), cfg


def build_untrained(
    name: str, method: str = "dynamicvit", keep_rate: float | None = None, img_size: int | None = None, **kwargs
) -> nn.Module:
    """The eval-mode model ``name`` (timm or zoo) reduced by ``method`` (``"dense"``: not reduced), built by the
    same rules as :func:`load_trained` but from no checkpoint: a learned method's modules keep their fresh
    initialisation.

    Args:
        name: a timm model or zoo name (a zoo name brings its backbone and keep rate).
        method: a registered method, or ``"dense"``.
        keep_rate: the keep rate (default: the zoo's, else the config's default).
        img_size: input resolution (default: the model's).
        **kwargs: ``pretrained`` (timm's dense weights) and other :class:`TrainConfig` fields.

    Returns:
        The model in eval mode.
    """
    pretrained = kwargs.pop("pretrained", False)
    values = {"model": name, "img_size": img_size, "dense": method == "dense", **kwargs}
    if method != "dense":
        values["method"] = method
    if keep_rate is not None:
        values["keep_rate"] = keep_rate
    cfg, options = _resolved(values, keep_rate)
    model = build_dense(cfg, None, 3, pretrained=pretrained)
    return (model if cfg.dense else reduce(model, cfg, **options)).eval()


def _resolved(values: dict, keep_rate: float | None) -> tuple[TrainConfig, dict]:
    """The validated config of ``values`` with a zoo name replaced by its backbone and (unless ``keep_rate``
    is given) its keep rate, and the zoo entry's sparsify options."""
    cfg, options = TrainConfig.from_dict(values), {}
    if cfg.model in ZOO:  # a released model: its backbone and, unless overridden, its budget
        arch, rate, options = resolve(cfg.model, keep_rate)
        cfg = dataclasses.replace(cfg, model=arch, keep_rate=rate)
    return validate(cfg, training=False), options


def _trunk(model: nn.Module, weights: dict) -> dict:
    """``weights`` without the classifier when ``model`` is an encoder (``num_classes=0``): a classifier's
    checkpoint gives an encoder its trunk."""
    return {k: v for k, v in weights.items() if not k.startswith("head.")} if is_encoder(model) else weights


def set_keep_mode(model: nn.Module, mode: str, thresholds=None) -> None:
    """Put the reducing module of ``model`` in keep ``mode`` (with ``thresholds`` if given); a dense model
    has nothing to set and only takes the fixed mode."""
    reducer = find_reducer(model)
    if reducer is None:
        if mode != "fixed" or thresholds is not None:
            raise ValueError("a dense model keeps every token: --keep-mode and --thresholds apply to sparse models")
        return
    reducer.keep_mode = mode
    if thresholds is not None:
        reducer.thresholds = thresholds


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """New modules at full lr, backbone at ``backbone_lr_scale``; no weight decay on 1-d params."""
    skip = set(getattr(model, "no_weight_decay", lambda: set())())
    groups: dict[tuple[bool, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        backbone = not cfg.dense and not is_added_key(name)
        no_decay = p.ndim <= 1 or name in skip
        group = groups.setdefault(
            (backbone, no_decay),
            {
                "params": [],
                "weight_decay": 0.0 if no_decay else cfg.weight_decay,
                "lr_scale": cfg.backbone_lr_scale if backbone else 1.0,
            },
        )
        group["params"].append(p)
    return list(groups.values())
