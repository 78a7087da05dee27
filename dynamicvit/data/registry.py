"""The data set registry: a name → a :class:`DataSet` (its builder, the task it serves, whether it has labels,
its class names). Each data module registers its sets with :func:`register_dataset` when imported, so this
module depends on no data set; the command line's ``--data`` choices and the trainer read it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch.utils.data import Dataset, IterableDataset

from dynamicvit.core.registry import Registry

__all__ = [
    "DATASETS",
    "DataOptions",
    "DataSet",
    "build_dataset",
    "class_names",
    "get_dataset",
    "image_shape",
    "register_dataset",
]


@dataclass(frozen=True)
class DataOptions:
    """What a run's config says about its data; each builder reads the fields that apply to it."""

    data_dir: str | None = None
    img_size: int = 224
    seed: int = 0
    limit: int | None = None
    canvas: int = 64
    distractors: int = 4
    distractors_max: int | None = None
    item_scale: float = 1.0
    item_size: int = 28
    scene_items: int = 3
    scene_items_max: int | None = None
    aa: str | None = None  # image data's training augmentation (dynamicvit.data.transforms)
    reprob: float = 0.0
    color_jitter: float = 0.4
    interpolation: str = "bilinear"


@dataclass(frozen=True)
class DataSet:
    """A registered data set: ``build(split, options)`` makes its ``"train"`` or test split."""

    name: str
    build: Callable[[str, DataOptions], Dataset]
    task: str = "classify"  # the task it serves (a name in dynamicvit.tasks.TASKS): its Dataset class's ``task``
    labelled: bool = True  # False: images only, for label-free calibration
    classes: tuple[str, ...] | None = None  # class names, when the set has fixed ones


DATASETS: Registry[DataSet] = Registry("data set")


def register_dataset(dataset: DataSet) -> DataSet:
    """Add ``dataset`` to :data:`DATASETS` under its name."""
    return DATASETS.register(dataset.name, dataset)


def get_dataset(name: str) -> DataSet:
    """The registered data set called ``name``, or a one-line ``ValueError`` listing them."""
    return DATASETS.lookup(name)


def build_dataset(name: str, split: str, data_dir=None, **options) -> Dataset:
    """The ``split`` (``"train"`` or a test split) of the registered data set ``name``; ``options`` are the
    fields of :class:`DataOptions` (``img_size``, ``seed``, ``limit``, ``canvas``, ``distractors``, ...).

    ``imagefolder`` reads ``data_dir/{train,val}``; ``cluttered-fashion-scenes`` is the segmentation set
    (per-pixel labels), ``cluttered-fashion-boxes`` and ``coco`` (images in ``data_dir/{train,val}``,
    annotations in ``data_dir/annotations/{train,val}.json``) are detection sets.
    """
    return get_dataset(name).build(split, DataOptions(data_dir=data_dir, **options))


def image_shape(dataset) -> tuple[int, ...]:
    """The (C, H, W) of a data set's first image (read from the stream for a set of shards)."""
    sample = next(iter(dataset)) if isinstance(dataset, IterableDataset) else dataset[0]
    return tuple(sample[0].shape)


def class_names(num_classes: int, data: str | None = None) -> tuple[str, ...] | None:
    """Names of a model's classes: those of the registered set ``data`` when they are ``num_classes``,
    ImageNet-1k's (timm's ``ImageNetInfo``) for a 1000-class model, else None."""
    classes = DATASETS[data].classes if data in DATASETS else None
    if classes is not None and len(classes) == num_classes:
        return classes
    if num_classes == 1000:
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return tuple(info.index_to_description(i) for i in range(1000))
    return None
