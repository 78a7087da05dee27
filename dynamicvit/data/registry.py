"""The data set registry: a name → a :class:`DataSet` (its builder, the task it serves, whether it has labels).
The command line's ``--data`` choices and the trainer read it; a data set is added by its module plus one
entry in :data:`DATASETS`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from dynamicvit.data.cluttered import ClutteredFashionDetection, ClutteredFashionMNIST, ClutteredFashionScenes
from dynamicvit.data.coco import CocoDetection
from dynamicvit.data.fashion import FASHION_CLASSES, FashionMNIST
from dynamicvit.data.folders import ImageFiles, image_folder

__all__ = ["DATASETS", "DataOptions", "DataSet", "build_dataset", "class_names", "get_dataset"]


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


@dataclass(frozen=True)
class DataSet:
    """A registered data set: ``build(split, options)`` makes its ``"train"`` or test split."""

    name: str
    build: Callable[[str, DataOptions], Dataset]
    task: str = "classify"  # the task it serves (a name in dynamicvit.tasks.TASKS): its Dataset class's ``task``
    labelled: bool = True  # False: images only, for label-free calibration


def _images(split: str, o: DataOptions) -> Dataset:
    if o.data_dir is None:
        raise ValueError(
            "images needs --data-dir: a folder of image files (its val/ sub-folder, if any, is the test set)"
        )
    folder = Path(o.data_dir)
    if split != "train" and (folder / "val").is_dir():
        folder = folder / "val"
    return ImageFiles(folder, o.img_size, o.limit)


def _coco(split: str, o: DataOptions) -> Dataset:
    if o.data_dir is None:
        raise ValueError("coco needs --data-dir with train/, val/ and annotations/{train,val}.json")
    part = "train" if split == "train" else "val"
    root = Path(o.data_dir)
    return CocoDetection(root / part, root / "annotations" / f"{part}.json", o.img_size, o.limit)


_ENTRIES = (
    DataSet("fashion-mnist", lambda s, o: FashionMNIST(s, o.data_dir, limit=o.limit)),
    DataSet(
        "cluttered-fashion-mnist",
        lambda s, o: ClutteredFashionMNIST(
            s, o.data_dir, o.canvas, o.distractors, seed=o.seed, limit=o.limit, distractors_max=o.distractors_max
        ),
    ),
    DataSet(
        "cluttered-fashion-scenes",
        lambda s, o: ClutteredFashionScenes(s, o.data_dir, canvas=o.canvas, seed=o.seed, limit=o.limit),
        task=ClutteredFashionScenes.task,
    ),
    DataSet(
        "cluttered-fashion-boxes",
        lambda s, o: ClutteredFashionDetection(s, o.data_dir, canvas=o.canvas, seed=o.seed, limit=o.limit),
        task=ClutteredFashionDetection.task,
    ),
    DataSet("imagefolder", lambda s, o: image_folder(s, o.data_dir, o.img_size, o.limit)),
    DataSet("images", _images, labelled=False),
    DataSet("coco", _coco, task=CocoDetection.task),
)
DATASETS: dict[str, DataSet] = {d.name: d for d in _ENTRIES}


def get_dataset(name: str) -> DataSet:
    """The registered data set called ``name``, or a one-line ``ValueError`` listing them."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}") from None


def build_dataset(name: str, split: str, data_dir=None, **options) -> Dataset:
    """The ``split`` (``"train"`` or a test split) of the registered data set ``name``; ``options`` are the
    fields of :class:`DataOptions` (``img_size``, ``seed``, ``limit``, ``canvas``, ``distractors``, ...).

    ``imagefolder`` reads ``data_dir/{train,val}``; ``cluttered-fashion-scenes`` is the segmentation set
    (per-pixel labels), ``cluttered-fashion-boxes`` and ``coco`` (images in ``data_dir/{train,val}``,
    annotations in ``data_dir/annotations/{train,val}.json``) are detection sets.
    """
    return get_dataset(name).build(split, DataOptions(data_dir=data_dir, **options))


def class_names(num_classes: int, data: str | None = None) -> tuple[str, ...] | None:
    """Names of a model's classes: Fashion-MNIST's for a 10-class model trained on one of its sets,
    ImageNet-1k's (timm's ``ImageNetInfo``) for a 1000-class model, else None."""
    if num_classes == len(FASHION_CLASSES) and data and "fashion" in data:
        return FASHION_CLASSES
    if num_classes == 1000:
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        return tuple(info.index_to_description(i) for i in range(1000))
    return None

