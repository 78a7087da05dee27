"""A run's data sets and its dense model fitted to them (classes, channels, input size) from its config."""

from __future__ import annotations

from torch import nn
from torch.utils.data import Dataset

from dynamicvit.builder.models import build_dense, trunk
from dynamicvit.config import RunConfig
from dynamicvit.core.losses import is_encoder
from dynamicvit.data.registry import DATASETS, get_dataset, image_shape
from dynamicvit.tasks.base import Task
from dynamicvit.tasks.registry import DEFAULT_TASK, get_task
from dynamicvit.weights.checkpoint import infer_timm_kwargs, load_checkpoint, read_state_dict

__all__ = ["build_dense_for_data", "build_run_dataset", "data_for", "dataset_task"]


def build_run_dataset(cfg: RunConfig, split: str) -> Dataset:
    """The run's train or test set, as its config's data section describes it."""
    return get_dataset(cfg.data.dataset).build(split, cfg.data_options(split))


def build_dense_for_data(cfg: RunConfig, dataset, pretrained: bool = False) -> nn.Module:
    """:func:`build_dense` with classes, channels and (dense prediction) input size from ``dataset``;
    the teacher checkpoint loaded when the config names one."""
    task, found = get_task(cfg.model.task), dataset_task(dataset)
    if found is not task:
        raise ValueError(
            f"--task {cfg.model.task} needs --data {' or '.join(data_for(task))}; --data {cfg.data.dataset} is a "
            f"{found.name} set (--task {found.name})"
        )
    if not task.mixes_labels and (cfg.augment.mixup or cfg.augment.cutmix):
        raise ValueError(f"--task {cfg.model.task} takes no --mixup / --cutmix (they mix class labels)")
    shape = image_shape(dataset)
    size = shape if task.fixed_input_size else None
    classes = dataset.num_classes
    if classes is None and cfg.model.teacher_checkpoint:
        classes = infer_timm_kwargs(read_state_dict(cfg.model.teacher_checkpoint))["num_classes"]
    model = build_dense(cfg, classes, dataset.in_chans, size, pretrained)
    _check_image_size(model, cfg, shape[-2:])
    if cfg.model.dense and is_encoder(model):
        raise ValueError("an encoder without classifier (num_classes 0) has no labels to learn from: train it sparse")
    if cfg.model.teacher_checkpoint:
        load_checkpoint(model, trunk(model, read_state_dict(cfg.model.teacher_checkpoint)))
    return model


def data_for(task: Task) -> list[str]:
    """The registered data sets that serve ``task``."""
    return [d.name for d in DATASETS.values() if d.task == task.name]


def dataset_task(dataset) -> Task:
    """The task a data set serves (its ``task`` attribute; classification when it has none)."""
    return get_task(getattr(dataset, "task", DEFAULT_TASK))


def _check_image_size(model: nn.Module, cfg: RunConfig, size: tuple[int, int]) -> None:
    """Before any training: a model built for a fixed input size must get the data set's size."""
    embed = getattr(model, "patch_embed", None)
    built = getattr(embed, "img_size", None)
    if built is not None and getattr(embed, "strict_img_size", False) and tuple(built) != size:
        raise ValueError(
            f"{cfg.model.model} is built for {built[0]}x{built[1]} images but the data set's are {size[0]}x{size[1]}; "
            f"pass --img-size {size[0]} (or data of the model's size, e.g. --canvas {built[0]})"
        )
