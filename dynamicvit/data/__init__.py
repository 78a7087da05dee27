"""Data sets: ImageFolder trees, Fashion-MNIST from its idx files, Cluttered Fashion-MNIST.

Cluttered Fashion-MNIST places one Fashion-MNIST item at a random position on a larger
black canvas together with fragments cut from other items. The label is the item's
class, so *where* the object is matters and most of the canvas is uninformative – the
setting in which spatial sparsity pays. Every sample is a pure function of
``(seed, split, index)``.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "FASHION_CLASSES",
    "DEFAULT_FASHION_DIR",
    "read_idx",
    "load_fashion_mnist",
    "FashionMNIST",
    "ClutteredFashionMNIST",
    "ClutteredFashionScenes",
    "ClutteredFashionDetection",
    "CocoDetection",
    "ImageFiles",
    "collate_detection",
    "DATASETS",
    "build_dataset",
    "load_image",
]

DATASETS = (
    "fashion-mnist",
    "cluttered-fashion-mnist",
    "cluttered-fashion-scenes",
    "cluttered-fashion-boxes",
    "imagefolder",
    "images",
    "coco",
)

FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DEFAULT_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_MEAN, _STD = 0.1, 0.25  # pixel statistics of the black-background canvases, roughly


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (optionally gzipped) into a uint8 array, validating its header."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"cannot read idx file {path} (corrupt or truncated): {err}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte idx file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) != header + int(np.prod(shape)):
        raise ValueError(f"{path} is truncated or corrupt: header says {shape}, file has {len(data) - header} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _fashion_dirs(data_dir: str | os.PathLike | None) -> list[Path]:
    if data_dir is not None:
        return [Path(data_dir), Path(data_dir) / "FashionMNIST" / "raw"]
    cache = Path(os.environ.get("DYNAMICVIT_CACHE", Path.home() / ".cache" / "dynamicvit"))
    return [DEFAULT_FASHION_DIR, cache / "FashionMNIST" / "raw"]


def load_fashion_mnist(
    split: str = "train", data_dir: str | os.PathLike | None = None, download: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) of a Fashion-MNIST split.

    Looks in ``data_dir`` if given, else in /usr/share/datasets/fashion-mnist (Debian's
    ``dataset-fashion-mnist``) and the cache; ``download=True`` lets torchvision fetch it.
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    dirs = _fashion_dirs(data_dir)
    for directory in dirs:
        found = [_find(directory, stem) for stem in _FILES[split]]
        if all(found):
            images, labels = (read_idx(p) for p in found)
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise ValueError(f"Fashion-MNIST files in {directory} do not match: {images.shape} vs {labels.shape}")
            return images, labels.astype(np.int64)
    if download:
        from torchvision.datasets import FashionMNIST as TVFashionMNIST

        TVFashionMNIST(str(dirs[-1].parent.parent), train=split == "train", download=True)
        return load_fashion_mnist(split, dirs[-1], download=False)
    raise FileNotFoundError(
        f"Fashion-MNIST ({split}) not found in {', '.join(map(str, dirs))}. Install it with "
        "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu), pass --data-dir DIR holding "
        f"{_FILES[split][0]}.gz and {_FILES[split][1]}.gz, or (Python API) download=True when online."
    )


def _to_tensor(canvas: np.ndarray) -> torch.Tensor:
    return (torch.from_numpy(np.array(canvas, dtype=np.float32)).div_(255.0).sub_(_MEAN).div_(_STD)).unsqueeze(0)


class FashionMNIST(Dataset):
    """Plain Fashion-MNIST as normalised 1×28×28 tensors."""

    num_classes = 10
    in_chans = 1

    def __init__(self, split: str = "train", data_dir=None, download: bool = False, limit: int | None = None) -> None:
        self.images, self.labels = load_fashion_mnist(split, data_dir, download)
        if limit is not None:
            self.images, self.labels = self.images[:limit], self.labels[:limit]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return _to_tensor(self.images[index]), int(self.labels[index])


class _Canvases(Dataset):
    """Fashion-MNIST items composed on a ``canvas``² black image, deterministic per seed, split and index."""

    in_chans = 1

    def __init__(self, split: str, data_dir, canvas: int, seed: int, limit: int | None, download: bool) -> None:
        if canvas < 28:
            raise ValueError(f"canvas must be at least 28 pixels (one item), got {canvas}")
        self.images, self.labels = load_fashion_mnist(split, data_dir, download)
        self.length = len(self.labels) if limit is None else min(limit, len(self.labels))
        self.canvas, self.seed = canvas, seed
        self._split_id = 0 if split == "train" else 1

    def __len__(self) -> int:
        return self.length

    def _rng(self, index: int, *salt: int) -> np.random.Generator:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return np.random.default_rng([self.seed, self._split_id, index, *salt])


class ClutteredFashionMNIST(_Canvases):
    """One item at a random place on a ``canvas``² black image plus ``distractors`` fragments
    (with ``distractors_max``, a count drawn per canvas from [distractors, distractors_max], so the
    difficulty varies per image; :meth:`distractor_count` tells it).

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
    ) -> None:
        if not 0 < fragment <= 28:
            raise ValueError(f"fragment must be in 1..28 pixels, got {fragment}")
        if distractors_max is not None and distractors_max < distractors:
            raise ValueError(f"distractors_max ({distractors_max}) must be at least distractors ({distractors})")
        super().__init__(split, data_dir, canvas, seed, limit, download)
        self.distractors, self.distractors_max, self.fragment = distractors, distractors_max, fragment
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
        y, x = (int(v) for v in rng.integers(0, size - 28 + 1, size=2))
        region = canvas[y : y + 28, x : x + 28]
        np.maximum(region, self.images[index], out=region)
        return canvas, int(self.labels[index]), (y, x)

    def distractor_count(self, index: int) -> int:
        """The number of fragments on canvas ``index`` (its difficulty)."""
        if self.distractors_max is None:
            return self.distractors
        return int(self._rng(index, 1).integers(self.distractors, self.distractors_max + 1))

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if not self._cached[index]:
            self._cache[index] = self.render(index)[0]
            self._cached[index] = True
        return _to_tensor(self._cache[index]), int(self.labels[index])


class ClutteredFashionScenes(_Canvases):
    """Segmentation scenes: ``items`` Fashion-MNIST items at random places on a ``canvas``² image.

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
    ) -> None:
        if items < 1:
            raise ValueError(f"a scene needs at least one item, got {items}")
        super().__init__(split, data_dir, canvas, seed, limit, download)
        self.items, self.threshold = items, threshold

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
        picks = [index, *rng.integers(len(self.images), size=self.items - 1)]
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
        return _to_tensor(canvas), torch.from_numpy(labels)


def collate_detection(batch) -> tuple[torch.Tensor, list[dict[str, torch.Tensor]]]:
    """Images stacked (one size), targets as a list of dicts: the detection sets' ``collate_fn``."""
    return torch.stack([image for image, _ in batch]), [target for _, target in batch]


class ClutteredFashionDetection(ClutteredFashionScenes):
    """Detection scenes: the segmentation scenes' ``items`` Fashion-MNIST items on a ``canvas``² image,
    each with a tight box from its own silhouette and its class (0–9). Returns (image (1, H, W), target)
    with target ``{"boxes": (N, 4) float xyxy pixels, "labels": (N,) int64}`` as torchvision's detectors
    take; ``collate_fn`` batches them."""

    task = "detect"
    num_classes = 10
    class_names = FASHION_CLASSES
    collate_fn = staticmethod(collate_detection)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        canvas, _, items = self.render_items(index)
        return _to_tensor(canvas), _target([label for label, _ in items], [box for _, box in items])


def _target(labels: list[int], boxes: list) -> dict[str, torch.Tensor]:
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
    }


class CocoDetection(Dataset):
    """A COCO-format detection set (an ``images`` folder and an annotation json) read with
    ``pycocotools``; images resized to ``img_size``² RGB (ImageNet statistics), boxes scaled with them.

    Every record is checked when the set is built: a box outside its image, a non-positive width or
    height, an unknown category id or a missing image file is a ``ValueError`` naming the record.
    Images without boxes are fine. Category ids map to labels 0..K-1 in id order (``category_ids``).
    """

    task = "detect"
    in_chans = 3

    def __init__(self, image_dir, annotation_file, img_size: int = 224, limit: int | None = None) -> None:
        from pycocotools.coco import COCO

        image_dir, annotation_file = Path(image_dir), Path(annotation_file)
        if not annotation_file.is_file():
            raise FileNotFoundError(f"no COCO annotation file at {annotation_file}")
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                self.coco = COCO(str(annotation_file))
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"cannot read COCO annotations {annotation_file}: {err!r}") from None
        self.category_ids = sorted(self.coco.getCatIds())
        self.class_names = tuple(self.coco.cats[c]["name"] for c in self.category_ids)
        self.num_classes = len(self.category_ids)
        self.image_dir, self.img_size = image_dir, img_size
        self.ids = sorted(self.coco.getImgIds())[:limit]
        for image_id in self.ids:
            self._check(image_id)

    def _check(self, image_id: int) -> None:
        info = self.coco.imgs[image_id]
        where = f"{self.image_dir / info.get('file_name', '?')} (image id {image_id})"
        if not (self.image_dir / info.get("file_name", "")).is_file():
            raise ValueError(f"COCO image {where}: no such file")
        width, height = info.get("width"), info.get("height")
        if not width or not height:
            raise ValueError(f"COCO image {where}: the record has no width and height")
        for ann in self.coco.imgToAnns.get(image_id, []):
            x, y, w, h = ann["bbox"]
            record = f"COCO annotation {ann.get('id')} of image {where}"
            if ann["category_id"] not in self.coco.cats:
                raise ValueError(f"{record}: unknown category id {ann['category_id']}")
            if w <= 0 or h <= 0:
                raise ValueError(f"{record}: box [x, y, w, h] = {ann['bbox']} has a non-positive size")
            if x < 0 or y < 0 or x + w > width or y + h > height:
                raise ValueError(f"{record}: box [x, y, w, h] = {ann['bbox']} lies outside the {width}x{height} image")

    def __len__(self) -> int:
        return len(self.ids)

    collate_fn = staticmethod(collate_detection)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        x, _ = load_image(self.image_dir / info["file_name"], (self.img_size,) * 2, 3)
        sx, sy = self.img_size / info["width"], self.img_size / info["height"]
        anns = [a for a in self.coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        boxes = [[bx * sx, by * sy, (bx + bw) * sx, (by + bh) * sy] for bx, by, bw, bh in (a["bbox"] for a in anns)]
        return x, _target([self.category_ids.index(a["category_id"]) for a in anns], boxes)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ImageFiles(Dataset):
    """Every image file under ``folder`` (sub-folders included, any layout), resized to ``img_size``²
    RGB with ImageNet statistics, label -1: data without labels, for label-free calibration."""

    in_chans = 3
    num_classes = None  # unknown: the model's classes come from its teacher

    def __init__(self, folder, img_size: int = 224, limit: int | None = None) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"no image folder at {folder}")
        self.files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
        if not self.files:
            raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
        self.img_size = img_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return load_image(self.files[index], (self.img_size, self.img_size), 3)[0], -1


def build_dataset(
    name: str,
    split: str,
    data_dir=None,
    img_size: int = 224,
    seed: int = 0,
    limit: int | None = None,
    canvas: int = 64,
    distractors: int = 4,
    distractors_max: int | None = None,
) -> Dataset:
    """One of :data:`DATASETS`; ``imagefolder`` reads ``data_dir/{train,val}``;
    ``cluttered-fashion-scenes`` is the segmentation set (per-pixel labels), ``cluttered-fashion-boxes``
    and ``coco`` (images in ``data_dir/{train,val}``, annotations in ``data_dir/annotations/{train,val}.json``)
    are detection sets.

    ``canvas`` and ``distractors`` apply to the cluttered set, ``img_size`` to image folders.
    """
    if name == "fashion-mnist":
        return FashionMNIST(split, data_dir, limit=limit)
    if name == "cluttered-fashion-mnist":
        return ClutteredFashionMNIST(
            split, data_dir, canvas, distractors, seed=seed, limit=limit, distractors_max=distractors_max
        )
    if name == "cluttered-fashion-scenes":
        return ClutteredFashionScenes(split, data_dir, canvas=canvas, seed=seed, limit=limit)
    if name == "cluttered-fashion-boxes":
        return ClutteredFashionDetection(split, data_dir, canvas=canvas, seed=seed, limit=limit)
    if name == "imagefolder":
        return _image_folder(split, data_dir, img_size, limit)
    if name == "images":
        if data_dir is None:
            raise ValueError(
                "images needs --data-dir: a folder of image files (its val/ sub-folder, if any, is the test set)"
            )
        folder = Path(data_dir)
        if split != "train" and (folder / "val").is_dir():
            folder = folder / "val"
        return ImageFiles(folder, img_size, limit)
    if name == "coco":
        if data_dir is None:
            raise ValueError("coco needs --data-dir with train/, val/ and annotations/{train,val}.json")
        part = "train" if split == "train" else "val"
        return CocoDetection(Path(data_dir) / part, Path(data_dir) / "annotations" / f"{part}.json", img_size, limit)
    raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASETS)}")


def _image_folder(split: str, data_dir, img_size: int, limit: int | None) -> Dataset:
    from timm.data import create_transform
    from torchvision.datasets import ImageFolder

    if data_dir is None:
        raise ValueError("imagefolder needs --data-dir with train/ and val/ class folders")
    folder = Path(data_dir) / ("train" if split == "train" else "val")
    if not folder.is_dir():
        raise FileNotFoundError(f"no {folder}: expected ImageNet layout, {data_dir}/train/<class>/*.jpg and val/")
    transform = create_transform(img_size, is_training=split == "train")
    dataset = ImageFolder(str(folder), transform=transform)
    dataset.num_classes, dataset.in_chans = len(dataset.classes), 3
    if limit is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
        dataset.num_classes, dataset.in_chans = len(dataset.dataset.classes), 3
    return dataset


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


def load_image(path: str | os.PathLike, size: tuple[int, int], channels: int) -> tuple[torch.Tensor, np.ndarray]:
    """An image file resized to ``size`` as model input (C, H, W) and as a picture (uint8) to draw on.

    One channel: grey, normalised like the Fashion-MNIST sets; three: RGB, ImageNet statistics.
    """
    from PIL import Image, UnidentifiedImageError

    if channels not in (1, 3):
        raise ValueError(f"images can be fed to 1- or 3-channel models, this one has {channels}")
    try:
        with Image.open(path) as image:
            picture = image.convert("L" if channels == 1 else "RGB").resize((size[1], size[0]), Image.BILINEAR)
    except (FileNotFoundError, IsADirectoryError):
        raise FileNotFoundError(f"no image file at {path}") from None
    except (UnidentifiedImageError, OSError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from None
    pixels = np.asarray(picture)
    if channels == 1:
        return _to_tensor(pixels), pixels
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    x = torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1)
    mean, std = torch.tensor(IMAGENET_DEFAULT_MEAN)[:, None, None], torch.tensor(IMAGENET_DEFAULT_STD)[:, None, None]
    return (x - mean) / std, pixels
