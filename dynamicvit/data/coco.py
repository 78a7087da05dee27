"""COCO-format detection sets read with ``pycocotools``."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import torch
from torch.utils.data import Dataset

from dynamicvit.data.folders import load_image
from dynamicvit.data.registry import DataOptions, DataSet, register_dataset
from dynamicvit.data.targets import collate_detection, detection_target

__all__ = ["CocoDetection"]


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
        except (ValueError, KeyError, TypeError, AssertionError, AttributeError) as err:
            what = "not a COCO annotation object" if isinstance(err, AssertionError) else repr(err)
            raise ValueError(f"cannot read COCO annotations {annotation_file}: {what}") from None
        self.category_ids = sorted(self.coco.getCatIds())
        unnamed = [c for c in self.category_ids if not isinstance(self.coco.cats[c].get("name"), str)]
        if unnamed:
            raise ValueError(f"COCO annotations {annotation_file}: categories {unnamed} have no name")
        self.class_names = tuple(self.coco.cats[c]["name"] for c in self.category_ids)
        self.num_classes = len(self.category_ids)
        self.image_dir, self.img_size = image_dir, img_size
        self.ids = sorted(self.coco.getImgIds())[:limit]
        for image_id in self.ids:
            self._check(image_id)

    def _check(self, image_id: int) -> None:
        info = self.coco.imgs[image_id]
        where = f"{self.image_dir / str(info.get('file_name', '?'))} (image id {image_id})"
        inside = self._path(info).resolve().is_relative_to(self.image_dir.resolve())
        if not inside:  # an absolute name or one with ../ would read files elsewhere
            raise ValueError(f"COCO image {where}: file_name must name a file inside {self.image_dir}")
        if not self._path(info).is_file():
            raise ValueError(f"COCO image {where}: no such file")
        width, height = info.get("width"), info.get("height")
        if not width or not height:
            raise ValueError(f"COCO image {where}: the record has no width and height")
        for ann in self.coco.imgToAnns.get(image_id, []):
            record = f"COCO annotation {ann.get('id')} of image {where}"
            bbox = ann.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
                raise ValueError(f"{record}: no bbox [x, y, w, h] (got {bbox!r})")
            x, y, w, h = bbox
            if ann.get("category_id") not in self.coco.cats:
                raise ValueError(f"{record}: unknown category id {ann.get('category_id')}")
            if w <= 0 or h <= 0:
                raise ValueError(f"{record}: box [x, y, w, h] = {ann['bbox']} has a non-positive size")
            if x < 0 or y < 0 or x + w > width or y + h > height:
                raise ValueError(f"{record}: box [x, y, w, h] = {ann['bbox']} lies outside the {width}x{height} image")

    def _path(self, info: dict) -> Path:
        return self.image_dir / str(info.get("file_name", ""))

    def __len__(self) -> int:
        return len(self.ids)

    collate_fn = staticmethod(collate_detection)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image_id = self.ids[index]
        info = self.coco.imgs[image_id]
        x, _ = load_image(self._path(info), (self.img_size,) * 2, 3)
        sx, sy = self.img_size / info["width"], self.img_size / info["height"]
        anns = [a for a in self.coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
        boxes = [[bx * sx, by * sy, (bx + bw) * sx, (by + bh) * sy] for bx, by, bw, bh in (a["bbox"] for a in anns)]
        return x, detection_target([self.category_ids.index(a["category_id"]) for a in anns], boxes)


def _coco(split: str, o: DataOptions) -> Dataset:
    if o.data_dir is None:
        raise ValueError("coco needs --data-dir with train/, val/ and annotations/{train,val}.json")
    part = "train" if split == "train" else "val"
    root = Path(o.data_dir)
    return CocoDetection(root / part, root / "annotations" / f"{part}.json", o.img_size, o.limit)


register_dataset(DataSet("coco", _coco, task=CocoDetection.task))
