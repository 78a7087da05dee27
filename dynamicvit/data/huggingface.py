"""Hugging Face datasets (``--data hfds``): a ``DatasetDict`` saved with ``save_to_disk`` (read with
``datasets.load_from_disk``) or a folder of Parquet files as the Hub stores them
(``train-*.parquet``, ``validation-*.parquet``), with an ``image`` and a ``label`` column.

The rows are read by index, so a ``torchrun`` job splits them across ranks with the same
``DistributedSampler`` as image folders, and unreadable images are skipped and counted the same way."""

from __future__ import annotations

import glob
import io
from pathlib import Path

import torch
from torch.utils.data import Dataset

from dynamicvit.data.registry import DataOptions, DataSet, register_dataset
from dynamicvit.data.skipping import read_skipping
from dynamicvit.data.transforms import image_transform

__all__ = ["HFImages", "load_split"]

SPLITS = {"train": ("train",), "val": ("validation", "val", "test")}  # the first present is used


def load_split(data_dir: str | None, split: str):
    """The ``split`` (``"train"`` or ``"val"``) of the dataset saved in ``data_dir``, as a ``datasets.Dataset``."""
    import datasets

    if data_dir is None or not Path(data_dir).is_dir():
        raise ValueError(
            f"--data hfds needs --data-dir: a folder written by save_to_disk or of Parquet files, not {data_dir}"
        )
    folder = Path(data_dir)
    if (folder / "dataset_dict.json").is_file():
        saved = datasets.load_from_disk(str(folder))
        name = next((n for n in SPLITS[split] if n in saved), None)
        if name is None:
            raise ValueError(f"--data-dir {folder}: no {' or '.join(SPLITS[split])} split (it has {', '.join(saved)})")
        return saved[name]
    for name in SPLITS[split]:
        files = sorted(glob.glob(str(folder / "**" / f"{name}-*.parquet"), recursive=True))
        if files:
            return datasets.load_dataset("parquet", data_files={name: files}, split=name)
    raise ValueError(
        f"--data-dir {folder}: neither a saved DatasetDict (dataset_dict.json) nor Parquet files named "
        f"{' or '.join(SPLITS[split])}-*.parquet"
    )


class HFImages(Dataset):
    """(image tensor, class) pairs of a Hugging Face dataset's ``image`` and ``label`` columns."""

    in_chans = 3

    def __init__(self, table, transform, source: str = "the dataset", limit: int | None = None) -> None:
        missing = [c for c in ("image", "label") if c not in table.column_names]
        if missing:
            raise ValueError(
                f"{source} has no {' or '.join(missing)} column (its columns: {', '.join(table.column_names)})"
            )
        if limit is not None:
            table = table.select(range(min(limit, len(table))))
        self.table, self.transform = table, transform
        label = table.features["label"]
        self.num_classes = getattr(label, "num_classes", None) or int(max(table["label"])) + 1
        self.classes = getattr(label, "names", None)

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return read_skipping(self, index, self._read, lambda i: f"row {i}")

    def _read(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        row = self.table[index]
        image = row["image"]
        if isinstance(image, dict):  # an undecoded Image feature: {"bytes": ..., "path": ...}
            image = Image.open(io.BytesIO(image["bytes"])) if image.get("bytes") else Image.open(image["path"])
        return self.transform(image.convert("RGB")), int(row["label"])


def _hfds(split: str, o: DataOptions) -> HFImages:
    name = "train" if split == "train" else "val"
    table = load_split(o.data_dir, name)
    return HFImages(table, image_transform(o, split == "train"), f"--data-dir {o.data_dir} ({name})", o.limit)


register_dataset(DataSet("hfds", _hfds))
