"""Fashion-MNIST from its idx files (Debian's ``dataset-fashion-mnist`` or any folder holding them)."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dynamicvit.data.registry import DataSet, register_dataset

__all__ = ["DEFAULT_FASHION_DIR", "FASHION_CLASSES", "FashionMNIST", "load_fashion_mnist", "read_idx", "to_tensor"]

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


MAX_IDX_BYTES = 256 * 2**20  # Fashion-MNIST's largest file is 47 MB uncompressed


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (optionally gzipped) into a uint8 array, validating its header."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read(MAX_IDX_BYTES + 1)  # a gzip bomb stops here instead of filling the memory
    except (OSError, EOFError, zlib.error) as err:
        raise ValueError(f"cannot read idx file {path} (corrupt or truncated): {err}") from None
    if len(data) > MAX_IDX_BYTES:
        raise ValueError(f"{path} holds more than {MAX_IDX_BYTES} bytes (uncompressed); not an idx file read here")
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


def to_tensor(canvas: np.ndarray) -> torch.Tensor:
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
        return to_tensor(self.images[index]), int(self.labels[index])


register_dataset(
    DataSet("fashion-mnist", lambda s, o: FashionMNIST(s, o.data_dir, limit=o.limit), classes=FASHION_CLASSES)
)
