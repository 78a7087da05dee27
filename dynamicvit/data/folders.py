"""Image files: ImageFolder trees (timm's transforms), any folder of images without labels, one image file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dynamicvit.data.fashion import to_tensor
from dynamicvit.data.registry import DataOptions, DataSet, register_dataset
from dynamicvit.data.skipping import read_skipping
from dynamicvit.data.transforms import image_transform

__all__ = ["IMAGE_SUFFIXES", "ImageFiles", "image_folder", "load_image"]

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
        def read(i: int) -> tuple[torch.Tensor, int]:
            return load_image(self.files[i], (self.img_size,) * 2, 3)[0], -1

        return read_skipping(self, index, read, lambda i: self.files[i])


def _skipping(folder_class: type) -> type:
    """``folder_class`` (a torchvision image folder) whose unreadable images are skipped and counted."""

    class Skipping(folder_class):
        def __getitem__(self, index: int):
            return read_skipping(self, index, super().__getitem__, lambda i: self.samples[i][0])

    return Skipping


def image_folder(split: str, o: DataOptions) -> Dataset:
    """An ImageNet-style tree, ``data_dir/{train,val}/<class>/*.jpg``, with timm's transforms."""
    from torchvision.datasets import ImageFolder

    data_dir, limit = o.data_dir, o.limit
    if data_dir is None:
        raise ValueError("imagefolder needs --data-dir with train/ and val/ class folders")
    folder = Path(data_dir) / ("train" if split == "train" else "val")
    if not folder.is_dir():
        raise FileNotFoundError(f"no {folder}: expected ImageNet layout, {data_dir}/train/<class>/*.jpg and val/")
    transform = image_transform(o, training=split == "train")
    dataset = _skipping(ImageFolder)(str(folder), transform=transform)
    dataset.num_classes, dataset.in_chans = len(dataset.classes), 3
    if limit is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
        dataset.num_classes, dataset.in_chans = len(dataset.dataset.classes), 3
    return dataset


MAX_PIXELS = 89_478_485  # PIL's decompression-bomb threshold: larger images are refused, not decoded


def load_image(path: str | os.PathLike, size: tuple[int, int], channels: int) -> tuple[torch.Tensor, np.ndarray]:
    """An image file resized to ``size`` as model input (C, H, W) and as a picture (uint8) to draw on.

    One channel: grey, normalised like the Fashion-MNIST sets; three: RGB, ImageNet statistics.
    """
    from PIL import Image, UnidentifiedImageError

    if channels not in (1, 3):
        raise ValueError(f"images can be fed to 1- or 3-channel models, this one has {channels}")
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:  # checked from the header, before decoding
                raise ValueError(f"image {path} has {image.width}x{image.height} pixels, over the {MAX_PIXELS} limit")
            picture = image.convert("L" if channels == 1 else "RGB").resize((size[1], size[0]), Image.BILINEAR)
    except (FileNotFoundError, IsADirectoryError):
        raise FileNotFoundError(f"no image file at {path}") from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise ValueError(f"cannot read image {path}: {err}") from None
    pixels = np.asarray(picture)
    if channels == 1:
        return to_tensor(pixels), pixels
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    x = torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1)
    mean, std = torch.tensor(IMAGENET_DEFAULT_MEAN)[:, None, None], torch.tensor(IMAGENET_DEFAULT_STD)[:, None, None]
    return (x - mean) / std, pixels


def _images(split: str, o: DataOptions) -> Dataset:
    if o.data_dir is None:
        raise ValueError(
            "images needs --data-dir: a folder of image files (its val/ sub-folder, if any, is the test set)"
        )
    folder = Path(o.data_dir)
    if split != "train" and (folder / "val").is_dir():
        folder = folder / "val"
    return ImageFiles(folder, o.img_size, o.limit)


register_dataset(DataSet("imagefolder", image_folder))
register_dataset(DataSet("images", _images, labelled=False))
