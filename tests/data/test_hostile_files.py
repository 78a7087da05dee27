"""Broken and hostile data files end in one-line errors naming them, before any work: COCO files of the
wrong shape or reaching outside their image folder, images over the pixel limit, gzip bombs."""

import gzip
import json

import numpy as np
import pytest
from PIL import Image

from dynamicvit.data import CocoDetection, fashion, folders, load_image, read_idx


def _coco(tmp_path, images=None, annotations=None, categories=None):
    (tmp_path / "images").mkdir(exist_ok=True)
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(tmp_path / "images" / "a.png")
    data = {
        "images": images or [{"id": 1, "file_name": "a.png", "width": 20, "height": 20}],
        "annotations": annotations or [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}],
        "categories": categories or [{"id": 1, "name": "box"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    return tmp_path / "images", tmp_path / "ann.json"


def test_a_well_formed_set_reads(tmp_path):
    data = CocoDetection(*_coco(tmp_path), img_size=16)
    assert data.class_names == ("box",) and data[0][1]["boxes"].shape == (1, 4)


@pytest.mark.promise(
    "hostile files",
    "a COCO annotation file that is a list: `not a COCO annotation object`",
)
def test_an_annotation_file_that_is_a_list(tmp_path):
    images, ann = _coco(tmp_path)
    ann.write_text("[]")
    with pytest.raises(ValueError, match="ann.json: not a COCO annotation object"):
        CocoDetection(images, ann)


@pytest.mark.promise(
    "hostile files",
    "a COCO category without a name: `categories [...] have no name`",
)
def test_a_category_without_a_name(tmp_path):
    with pytest.raises(ValueError, match=r"categories \[1\] have no name"):
        CocoDetection(*_coco(tmp_path, categories=[{"id": 1}]))


@pytest.mark.promise(
    "hostile files",
    "a COCO annotation without `bbox`: `COCO annotation N of image …: no bbox`",
)
def test_an_annotation_without_a_box(tmp_path):
    with pytest.raises(ValueError, match="COCO annotation 7 of image .*a.png .*: no bbox"):
        CocoDetection(*_coco(tmp_path, annotations=[{"id": 7, "image_id": 1, "category_id": 1}]))


@pytest.mark.parametrize("name", ["../outside.png", "/etc/hostname"])
@pytest.mark.promise(
    "hostile files",
    "a COCO `file_name` that is absolute or climbs out with `../`: `file_name must name a file inside IMAGE_DIR`",
)
def test_file_names_stay_inside_the_image_folder(tmp_path, name):
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(tmp_path / "outside.png")
    images = [{"id": 1, "file_name": name, "width": 20, "height": 20}]
    with pytest.raises(ValueError, match="file_name must name a file inside"):
        CocoDetection(*_coco(tmp_path, images=images))


@pytest.mark.promise(
    "hostile files",
    "an image over PIL's decompression-bomb pixel limit is refused from its header, before decoding",
)
def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(folders, "MAX_PIXELS", 599)
    with pytest.raises(ValueError, match=r"big.png has 30x20 pixels, over the 599 limit"):
        load_image(tmp_path / "big.png", (8, 8), 3)
    monkeypatch.setattr(folders, "MAX_PIXELS", 600)
    assert load_image(tmp_path / "big.png", (8, 8), 3)[0].shape == (3, 8, 8)


@pytest.mark.promise(
    "hostile files",
    "a gzip idx file that inflates beyond its size limit stops there: `holds more than … bytes (uncompressed)`",
)
def test_a_gzip_bomb_stops_at_the_size_limit(tmp_path, monkeypatch):
    header = bytes([0, 0, 8, 1]) + (4096).to_bytes(4, "big")
    with gzip.open(tmp_path / "bomb-idx1-ubyte.gz", "wb") as f:
        f.write(header + bytes(4096))
    monkeypatch.setattr(fashion, "MAX_IDX_BYTES", 1000)
    with pytest.raises(ValueError, match="holds more than 1000 bytes"):
        read_idx(tmp_path / "bomb-idx1-ubyte.gz")
    monkeypatch.setattr(fashion, "MAX_IDX_BYTES", 4104)
    assert read_idx(tmp_path / "bomb-idx1-ubyte.gz").shape == (4096,)


@pytest.mark.promise(
    "hostile files",
    "a corrupt image inside a training set is skipped, named on stderr once and counted in the data set's `skipped`",
)
def test_a_corrupt_training_image_is_skipped_and_counted(tmp_path, capsys):
    from dynamicvit.data import build_dataset
    from dynamicvit.data.skipping import skipped_records

    for cls in ("cat", "dog"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        Image.fromarray(np.full((20, 20, 3), 200, dtype=np.uint8)).save(tmp_path / "train" / cls / "good.png")
    (tmp_path / "train" / "cat" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    data = build_dataset("imagefolder", "train", data_dir=tmp_path, img_size=16)
    paths = [p for p, _ in data.samples]
    bad = paths.index(str(tmp_path / "train" / "cat" / "bad.png"))
    x, y = data[bad]  # the next readable image instead
    assert x.shape == (3, 16, 16) and y == data.samples[(bad + 1) % len(paths)][1]
    assert skipped_records(data) == 1 and "bad.png" in capsys.readouterr().err
    data[bad]
    assert capsys.readouterr().err == "" and skipped_records(data) == 2  # named once, counted each time
