"""The data set registry: a name → a :class:`DataSet` (its builder, the task it serves, whether it has labels,
its class names). Each data module registers its sets with :func:`register_dataset` when imported, so this
module depends on no data set; the command line's ``--data`` choices and the trainer read it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import Field, dataclass, fields

from torch.utils.data import Dataset, IterableDataset

from dynamicvit.core.registry import Registry

__all__ = [
    "DATASETS",
    "MAX_SIDE",
    "DataOptions",
    "DataSet",
    "build_dataset",
    "class_names",
    "dataset_options",
    "get_dataset",
    "image_shape",
    "register_dataset",
]


MAX_SIDE = 8192  # the largest image side a config may ask for: keeps a foreign checkpoint's from exhausting memory


@dataclass(frozen=True)
class DataOptions:
    """What every data set's builder gets from a run: where the data is, the image side, the seed, how many
    images, and the image sets' training augmentation. A data set with knobs of its own declares them in a
    subclass, each field once with :func:`~dynamicvit.core.options.option` (its help and valid range), and
    names that subclass as its :attr:`DataSet.options`: the run configuration and the command line take
    them from there."""

    data_dir: str | None = None
    img_size: int = 224
    seed: int = 0
    limit: int | None = None
    aa: str | None = None  # image data's training augmentation (dynamicvit.data.transforms)
    reprob: float = 0.0
    color_jitter: float = 0.4
    interpolation: str = "bilinear"

    def check(self, flag: Callable[[str], str]) -> None:
        """Raise a one-line ``ValueError`` when options that are each in range do not go together; ``flag``
        names an option as the user gave it (``flag("canvas")`` is ``"--canvas"`` on the command line)."""


@dataclass(frozen=True)
class DataSet:
    """A registered data set: ``build(split, options)`` makes its ``"train"`` or test split."""

    name: str
    build: Callable[[str, DataOptions], Dataset]
    task: str = "classify"  # the task it serves (a name in dynamicvit.tasks.TASKS): its Dataset class's ``task``
    labelled: bool = True  # False: images only, for label-free calibration
    classes: tuple[str, ...] | None = None  # class names, when the set has fixed ones
    options: type[DataOptions] = DataOptions  # its builder's options: DataOptions and the set's own knobs

    def own_options(self) -> list[Field]:
        """The knobs this set declares beyond :class:`DataOptions`, in declaration order."""
        common = {f.name for f in fields(DataOptions)}
        return [f for f in fields(self.options) if f.name not in common]


DATASETS: Registry[DataSet] = Registry("data set")


def register_dataset(dataset: DataSet) -> DataSet:
    """Add ``dataset`` to :data:`DATASETS` under its name."""
    return DATASETS.register(dataset.name, dataset)


def get_dataset(name: str) -> DataSet:
    """The registered data set called ``name``, or a one-line ``ValueError`` listing them."""
    return DATASETS.lookup(name)


def build_dataset(name: str, split: str, data_dir=None, **options) -> Dataset:
    """The ``split`` (``"train"`` or a test split) of the registered data set ``name``; ``options`` are the
    fields of its options class: :class:`DataOptions`' (``img_size``, ``seed``, ``limit``, ...) and its own
    (``canvas``, ``distractors``, ...); one it does not have is a one-line ``ValueError`` listing them.

    ``imagefolder`` reads ``data_dir/{train,val}``; ``cluttered-fashion-scenes`` is the segmentation set
    (per-pixel labels), ``cluttered-fashion-boxes`` and ``coco`` (images in ``data_dir/{train,val}``,
    annotations in ``data_dir/annotations/{train,val}.json``) are detection sets.
    """
    dataset = get_dataset(name)
    known = {f.name for f in fields(dataset.options)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"data set {name!r} has no option {unknown[0]!r}; its options: {', '.join(sorted(known))}")
    return dataset.build(split, dataset.options(data_dir=data_dir, **options))


def dataset_options() -> dict[str, tuple[Field, tuple[str, ...]]]:
    """Every registered set's own knobs: name → (its field, the sets that have it), in registration order.
    Sets may share a knob (inherited from one options class); two different declarations of a name are an
    error naming both sets."""
    found: dict[str, tuple[Field, tuple[str, ...]]] = {}
    for dataset in DATASETS.values():
        for f in dataset.own_options():
            seen, names = found.get(f.name, (f, ()))
            if seen is not f:
                raise TypeError(f"data sets {names[0]!r} and {dataset.name!r} declare option {f.name!r} differently")
            found[f.name] = (f, (*names, dataset.name))
    return found


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
