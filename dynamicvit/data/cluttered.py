"""Cluttered Fashion-MNIST places one Fashion-MNIST item at a random position on a larger
black canvas together with fragments cut from other items. The label is the item's
class, so *where* the object is matters and most of the canvas is uninformative – the
setting in which spatial sparsity pays. Every sample is a pure function of
``(seed, split, index)``. Besides ``"train"`` and ``"test"`` the classification set has a ``"val"`` split:
canvases of the last :data:`VAL_IMAGES` Fashion-MNIST training images, held out for choosing when a model has
converged, so the test canvases stay unseen (train on at most the first ``60000 - VAL_IMAGES``).

Three sets: classification (:class:`ClutteredFashionMNIST`), segmentation scenes and detection scenes."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dynamicvit.core.options import option
from dynamicvit.data.fashion import FASHION_CLASSES, load_fashion_mnist, to_tensor
from dynamicvit.data.registry import MAX_SIDE, DataOptions, DataSet, register_dataset
from dynamicvit.data.targets import collate_detection, detection_target

__all__ = [
    "MAX_SCENE_ITEMS",
    "VAL_IMAGES",
    "CanvasOptions",
    "ClutteredOptions",
    "SceneOptions",
    "ClutteredFashionDetection",
    "ClutteredFashionMNIST",
    "ClutteredFashionScenes",
]

VAL_IMAGES = 10_000  # the held-out "val" split: the last Fashion-MNIST training images
MAX_SCENE_ITEMS = 64


def _check_range_order(options: DataOptions, name: str, flag) -> None:
    """A count drawn from [NAME, NAME_max] per image: the upper end, when given, is not below the lower."""
    low, high = getattr(options, name), getattr(options, f"{name}_max")
    if high is not None and high < low:
        raise ValueError(f"{flag(f'{name}_max')} must be at least {flag(name)} ({low}), got {high}")


@dataclass(frozen=True)
class CanvasOptions(DataOptions):
    """The knob every cluttered set has: the canvas the items are placed on."""

    canvas: int = option(
        64, "canvas side", valid=(lambda v: 28 <= v <= MAX_SIDE, f"28 (a Fashion-MNIST item is 28x28) to {MAX_SIDE}")
    )


@dataclass(frozen=True)
class ClutteredOptions(CanvasOptions):
    """The classification canvases' knobs: clutter and the item's size."""

    distractors: int = option(4, "fragments per canvas", valid=(lambda v: v >= 0, "0 or more"))
    distractors_max: int | None = option(
        None,
        "a random count in [--distractors, this] per canvas (difficulty varies)",
        valid=(lambda v: v >= 0, "0 or more"),
    )
    item_scale: float = option(
        1.0,
        "each item resized by a factor in [1/this, this] (log-uniform; size varies)",
        valid=(lambda v: 1 <= v <= 4, "in [1, 4]"),
    )
    item_size: int = option(
        28,
        "the item's side in pixels before --item-scale (Fashion-MNIST's own 28)",
        valid=(lambda v: 4 <= v <= MAX_SIDE, f"4 to {MAX_SIDE} pixels"),
    )

    def check(self, flag) -> None:
        _check_range_order(self, "distractors", flag)
        side = round(self.item_size * self.item_scale)
        if side > self.canvas:
            raise ValueError(
                f"{flag('item_size')} {self.item_size} and {flag('item_scale')} {self.item_scale} make items up to "
                f"{side} pixels: more than the {self.canvas}-pixel {flag('canvas')}"
            )


@dataclass(frozen=True)
class SceneOptions(CanvasOptions):
    """The scene sets' knobs: how many items a scene holds."""

    scene_items: int = option(
        3, "items per scene", valid=(lambda v: 1 <= v <= MAX_SCENE_ITEMS, f"1 to {MAX_SCENE_ITEMS}")
    )
    scene_items_max: int | None = option(
        None,
        "a random count in [--scene-items, this] per scene (content varies)",
        valid=(lambda v: 1 <= v <= MAX_SCENE_ITEMS, f"1 to {MAX_SCENE_ITEMS}"),
    )

    def check(self, flag) -> None:
        _check_range_order(self, "scene_items", flag)


class _Canvases(Dataset):
    """Fashion-MNIST items composed on a ``canvas``² black image, deterministic per seed, split and index."""

    in_chans = 1

    def __init__(self, split: str, data_dir, canvas: int, seed: int, limit: int | None, download: bool) -> None:
        if canvas < 28:
            raise ValueError(f"canvas must be at least 28 pixels (one item), got {canvas}")
        self.images, self.labels = load_fashion_mnist(split, data_dir, download)
        self.length = len(self.labels) if limit is None else min(limit, len(self.labels))
        self.canvas, self.seed = canvas, seed
        self._split_id = {"train": 0, "test": 1}[split]

    def __len__(self) -> int:
        return self.length

    def _rng(self, index: int, *salt: int) -> np.random.Generator:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return np.random.default_rng([self.seed, self._split_id, index, *salt])


class ClutteredFashionMNIST(_Canvases):
    """One item at a random place on a ``canvas``² black image plus ``distractors`` fragments
    (with ``distractors_max``, a count drawn per canvas from [distractors, distractors_max], so the
    difficulty varies per image; :meth:`distractor_count` tells it). Items are ``item_size`` pixels wide
    (Fashion-MNIST's 28 by default); with ``item_scale`` s > 1 each is resized by a factor drawn
    log-uniformly from [1/s, s] around it (:meth:`item_image`), so the share of the canvas an image's
    object covers varies: a 2× item spans sixteen times the tokens of a ½× one.

    Fragments are ``fragment``² crops of other items of the same split, pasted with a
    pixel-wise maximum. :meth:`render` also returns the item's box, used by visualisations.
    """

    num_classes = 10

    def __init__(
        self,
        split: str = "train",
        data_dir=None,
        canvas: int = 64,
        distractors: int = 4,
        fragment: int = 9,
        seed: int = 0,
        limit: int | None = None,
        download: bool = False,
        distractors_max: int | None = None,
        item_scale: float = 1.0,
        item_size: int = 28,
    ) -> None:
        if not 4 <= item_size <= canvas:
            raise ValueError(f"item_size must be 4 to {canvas} pixels (the canvas), got {item_size}")
        if not 1.0 <= item_scale or round(item_size * item_scale) > canvas:
            raise ValueError(
                f"item_scale must be at least 1 and fit its items (up to {round(item_size * item_scale)} px) on "
                f"the {canvas}-px canvas, got {item_scale}"
            )
        if not 0 < fragment <= 28:
            raise ValueError(f"fragment must be in 1..28 pixels, got {fragment}")
        if distractors_max is not None and distractors_max < distractors:
            raise ValueError(f"distractors_max ({distractors_max}) must be at least distractors ({distractors})")
        held_out = split == "val"
        super().__init__("train" if held_out else split, data_dir, canvas, seed, limit, download)
        if held_out:  # the last VAL_IMAGES training images, drawn with their own generator
            self.images, self.labels = self.images[-VAL_IMAGES:], self.labels[-VAL_IMAGES:]
            self.length, self._split_id = min(self.length, len(self.labels)), 2
        self.distractors, self.distractors_max, self.fragment = distractors, distractors_max, fragment
        self.item_scale, self.item_size = float(item_scale), int(item_size)
        # rendered canvases, filled lazily (np.zeros pages stay unallocated until written)
        self._cache = np.zeros((self.length, canvas, canvas), dtype=np.uint8)
        self._cached = np.zeros(self.length, dtype=bool)

    def render(self, index: int) -> tuple[np.ndarray, int, tuple[int, int]]:
        """Canvas (uint8 H×W), label and the item's top-left corner (y, x)."""
        rng = self._rng(index)
        size, frag = self.canvas, self.fragment
        canvas = np.zeros((size, size), dtype=np.uint8)
        for _ in range(self.distractor_count(index)):
            other = self.images[rng.integers(len(self.images))]
            sy, sx = rng.integers(0, 28 - frag + 1, size=2)
            ty, tx = rng.integers(0, size - frag + 1, size=2)
            region = canvas[ty : ty + frag, tx : tx + frag]
            np.maximum(region, other[sy : sy + frag, sx : sx + frag], out=region)
        item = self.item_image(index)
        side = item.shape[0]
        y, x = (int(v) for v in rng.integers(0, size - side + 1, size=2))
        region = canvas[y : y + side, x : x + side]
        np.maximum(region, item, out=region)
        return canvas, int(self.labels[index]), (y, x)

    def item_image(self, index: int) -> np.ndarray:
        """Canvas ``index``'s item (uint8, square): the Fashion-MNIST image, resized by its drawn scale."""
        image = self.images[index]
        if self.item_scale == 1.0 and self.item_size == 28:
            return image
        log_s = math.log(self.item_scale)
        side = max(4, round(self.item_size * math.exp(self._rng(index, 2).uniform(-log_s, log_s))))
        return np.asarray(Image.fromarray(image).resize((side, side), Image.BILINEAR))

    def item_mask(self, index: int) -> np.ndarray:
        """Boolean H×W map of canvas ``index``'s item pixels (its own non-zero pixels, not the fragments'):
        where the item is, for measuring what a model looks at; never an input to training."""
        _, _, (y, x) = self.render(index)
        item = self.item_image(index)
        mask = np.zeros((self.canvas, self.canvas), dtype=bool)
        mask[y : y + item.shape[0], x : x + item.shape[1]] = item > 0
        return mask

    def distractor_count(self, index: int) -> int:
        """The number of fragments on canvas ``index`` (its difficulty)."""
        if self.distractors_max is None:
            return self.distractors
        return int(self._rng(index, 1).integers(self.distractors, self.distractors_max + 1))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not self._cached[index]:
            self._cache[index] = self.render(index)[0]
            self._cached[index] = True
        return to_tensor(self._cache[index]), int(self.labels[index])


class ClutteredFashionScenes(_Canvases):
    """Segmentation scenes: ``items`` Fashion-MNIST items at random places on a ``canvas``² image (with
    ``items_max``, a count drawn per scene from [items, items_max], so how much of a scene matters varies;
    :meth:`item_count` tells it).

    Each pixel is labelled with its item's class + 1 where the item's own silhouette (pixel
    value above ``threshold``) covers it, 0 (background) elsewhere; later items lie on top.
    Deterministic per seed, split and index. Returns (image (1, H, W), labels (H, W) int64).
    """

    task = "segment"
    num_classes = 11  # background + the 10 Fashion-MNIST classes
    class_names = ("background", *FASHION_CLASSES)

    def __init__(
        self,
        split: str = "train",
        data_dir=None,
        canvas: int = 64,
        items: int = 3,
        threshold: int = 40,
        seed: int = 0,
        limit: int | None = None,
        download: bool = False,
        items_max: int | None = None,
    ) -> None:
        if items < 1:
            raise ValueError(f"a scene needs at least one item, got {items}")
        if items_max is not None and items_max < items:
            raise ValueError(f"items_max ({items_max}) must be at least items ({items})")
        super().__init__(split, data_dir, canvas, seed, limit, download)
        self.items, self.items_max, self.threshold = items, items_max, threshold

    def item_count(self, index: int) -> int:
        """The number of items on scene ``index`` (drawn apart from their places, so a fixed count's
        scenes are the same with or without ``items_max``)."""
        if self.items_max is None:
            return self.items
        return int(self._rng(index, 8).integers(self.items, self.items_max + 1))

    def render(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Canvas (uint8 H×W) and per-pixel labels (int64 H×W)."""
        canvas, labels, _ = self.render_items(index)
        return canvas, labels

    def render_items(self, index: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, tuple[int, int, int, int]]]]:
        """Canvas, per-pixel labels and, per item, its class and the tight box (x0, y0, x1, y1), pixel
        edges, of its own silhouette (the whole item, also where a later one covers it)."""
        rng = self._rng(index, 7)
        size = self.canvas
        canvas = np.zeros((size, size), dtype=np.uint8)
        labels = np.zeros((size, size), dtype=np.int64)
        picks = [index, *rng.integers(len(self.images), size=self.item_count(index) - 1)]
        items = []
        for k in picks:
            y, x = (int(v) for v in rng.integers(0, size - 28 + 1, size=2))
            item = self.images[k]
            mask = item > self.threshold
            canvas[y : y + 28, x : x + 28][mask] = item[mask]
            labels[y : y + 28, x : x + 28][mask] = int(self.labels[k]) + 1
            if mask.any():
                rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
                box = (x + int(cols[0]), y + int(rows[0]), x + int(cols[-1]) + 1, y + int(rows[-1]) + 1)
                items.append((int(self.labels[k]), box))
        return canvas, labels, items

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        canvas, labels = self.render(index)
        return to_tensor(canvas), torch.from_numpy(labels)


class ClutteredFashionDetection(ClutteredFashionScenes):
    """Detection scenes: the segmentation scenes' items (``items``, or from [items, items_max]) on a ``canvas``² image,
    each with a tight box from its own silhouette and its class (0–9). Returns (image (1, H, W), target)
    with target ``{"boxes": (N, 4) float xyxy pixels, "labels": (N,) int64}`` as torchvision's detectors
    take; ``collate_fn`` batches them."""

    task = "detect"
    num_classes = 10
    class_names = FASHION_CLASSES
    collate_fn = staticmethod(collate_detection)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        canvas, _, items = self.render_items(index)
        return to_tensor(canvas), detection_target([label for label, _ in items], [box for _, box in items])


def _scene_options(o: SceneOptions) -> dict:
    """The scene data sets' keyword arguments from a run's :class:`SceneOptions`."""
    return dict(canvas=o.canvas, items=o.scene_items, items_max=o.scene_items_max, seed=o.seed, limit=o.limit)


register_dataset(
    DataSet(
        "cluttered-fashion-mnist",
        lambda s, o: ClutteredFashionMNIST(
            s,
            o.data_dir,
            o.canvas,
            o.distractors,
            seed=o.seed,
            limit=o.limit,
            distractors_max=o.distractors_max,
            item_scale=o.item_scale,
            item_size=o.item_size,
        ),
        classes=FASHION_CLASSES,
        options=ClutteredOptions,
    )
)
register_dataset(
    DataSet(
        "cluttered-fashion-scenes",
        lambda s, o: ClutteredFashionScenes(s, o.data_dir, **_scene_options(o)),
        task=ClutteredFashionScenes.task,
        classes=FASHION_CLASSES,
        options=SceneOptions,
    )
)
register_dataset(
    DataSet(
        "cluttered-fashion-boxes",
        lambda s, o: ClutteredFashionDetection(s, o.data_dir, **_scene_options(o)),
        task=ClutteredFashionDetection.task,
        classes=FASHION_CLASSES,
        options=SceneOptions,
    )
)
