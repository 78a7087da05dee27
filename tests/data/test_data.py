import gzip

import numpy as np
import pytest
import torch
from conftest import write_idx

from dynamicvit.data import (
    ClutteredFashionMNIST,
    ClutteredFashionScenes,
    FashionMNIST,
    build_dataset,
    load_fashion_mnist,
    read_idx,
)
from dynamicvit.data.fashion import to_tensor


@pytest.mark.promise(
    "bad input",
    "a corrupt or truncated `.gz` data file → "
    "`cannot read idx file …/train-images-idx3-ubyte.gz (corrupt or truncated): …`",
)
def test_read_idx_roundtrip_and_corruption(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", arr)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), arr)
    with gzip.open(tmp_path / "bad.gz", "wb") as f:
        f.write(b"\x01\x02\x03\x04")
    with pytest.raises(ValueError, match="magic"):
        read_idx(tmp_path / "bad.gz")
    raw = gzip.decompress((tmp_path / "a.gz").read_bytes())
    with gzip.open(tmp_path / "short.gz", "wb") as f:
        f.write(raw[:-5])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(tmp_path / "short.gz")
    packed = (tmp_path / "a.gz").read_bytes()
    (tmp_path / "corrupt.gz").write_bytes(packed[:12] + bytes(b ^ 0xFF for b in packed[12:40]) + packed[40:])
    with pytest.raises(
        ValueError, match=r"^cannot read idx file .*corrupt\.gz \(corrupt or truncated\): "
    ):  # zlib's error, named
        read_idx(tmp_path / "corrupt.gz")


@pytest.mark.promise(
    "bad input",
    "missing Fashion-MNIST → "
    "`Fashion-MNIST (train) not found in …. Install it with apt-get install dataset-fashion-mnist …`",
)
def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(
        FileNotFoundError,
        match=r"^Fashion-MNIST \(train\) not found in .*nothing.*apt-get install dataset-fashion-mnist",
    ):
        load_fashion_mnist("train", tmp_path / "nothing")


def test_real_fashion_mnist_from_debian_package():
    images, labels = load_fashion_mnist("test")
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert set(np.unique(labels)) == set(range(10))


def test_fashion_dataset_tensors(fake_fashion):
    ds = FashionMNIST("train", fake_fashion, limit=10)
    x, y = ds[3]
    assert len(ds) == 10 and x.shape == (1, 28, 28) and x.dtype == torch.float32
    images, labels = load_fashion_mnist("train", fake_fashion)
    assert y == labels[3]  # the stored label of the same image
    bar = 2 + 2 * int(y)  # the fake data's class marker: a bright bar at a class-specific row
    assert x[0, bar : bar + 3, 4:24].min() > x[0].median()


def test_cluttered_is_deterministic_and_labelled(fake_fashion):
    a = ClutteredFashionMNIST("train", fake_fashion, canvas=48, distractors=3, seed=1)
    b = ClutteredFashionMNIST("train", fake_fashion, canvas=48, distractors=3, seed=1)
    c = ClutteredFashionMNIST("train", fake_fashion, canvas=48, distractors=3, seed=2)
    assert torch.equal(a[5][0], b[5][0]) and not torch.equal(a[5][0], c[5][0])
    canvas, label, (y, x) = a.render(5)
    assert torch.equal(a[5][0], to_tensor(canvas))  # the (cached) input is the rendered canvas
    assert canvas.shape == (48, 48) and label == a.labels[5] == a[5][1]
    item = a.images[5]
    assert np.all(canvas[y : y + 28, x : x + 28] >= item)  # the item is pasted whole (max-blend)
    assert a[5][0].shape == (1, 48, 48)


def test_cluttered_validates_geometry(fake_fashion):
    with pytest.raises(ValueError, match="canvas"):
        ClutteredFashionMNIST("train", fake_fashion, canvas=20)
    with pytest.raises(ValueError, match="split"):
        load_fashion_mnist("valid", fake_fashion)
    with pytest.raises(ValueError, match="unknown data set"):
        build_dataset("cifar", "train")
    with pytest.raises(ValueError, match="imagefolder needs"):
        build_dataset("imagefolder", "train")


def test_imagefolder(tmp_path):
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((40, 50, 3), 40 * i, dtype=np.uint8)).save(tmp_path / split / cls / f"{i}.png")
    ds = build_dataset("imagefolder", "val", tmp_path, img_size=32)
    x, y = ds[0]
    assert ds.num_classes == 2 and x.shape == (3, 32, 32)
    assert [ds[i][1] for i in range(4)] == [0, 0, 1, 1] and ds.classes == ["cat", "dog"]
    assert not torch.equal(ds[0][0], ds[1][0])  # two different images (0 and 40 grey)


def test_cluttered_scenes_label_each_pixel_by_its_item(fake_fashion):
    scenes = ClutteredFashionScenes("train", fake_fashion, canvas=48, items=3, seed=1)
    x, y = scenes[5]
    again_x, again_y = ClutteredFashionScenes("train", fake_fashion, canvas=48, items=3, seed=1)[5]
    assert x.shape == (1, 48, 48) and y.shape == (48, 48) and y.dtype == torch.int64
    assert torch.equal(x, again_x) and torch.equal(y, again_y)  # deterministic per seed and index
    canvas, labels = scenes.render(5)
    assert ((labels > 0) == (canvas > scenes.threshold)).all()  # silhouettes, not boxes
    assert int(scenes.labels[5]) + 1 in set(labels.flatten().tolist())  # the indexed item is in the scene
    assert set(labels.flatten().tolist()) <= set(range(11))


def test_scenes_with_a_varying_number_of_items(fake_fashion):
    """--scene-items 1 --scene-items-max 6: each scene's own count in [1, 6], every count occurs, the labels
    hold no more items than the count says, and a fixed count's scenes are those without a maximum."""
    from dynamicvit.data import build_dataset

    data = build_dataset("cluttered-fashion-scenes", "train", fake_fashion, canvas=64, scene_items=1,
                         scene_items_max=6, limit=200)  # fmt: skip
    counts = [data.item_count(i) for i in range(200)]
    assert set(counts) == set(range(1, 7))
    for i in range(12):
        _, _, items = data.render_items(i)
        assert len(items) <= counts[i]
    one = next(i for i, c in enumerate(counts) if c == 1)
    assert len(set(data[one][1].flatten().tolist()) - {0}) == 1  # one item: one class besides background
    plain = build_dataset("cluttered-fashion-scenes", "train", fake_fashion, canvas=64, scene_items=3, limit=4)
    same = build_dataset("cluttered-fashion-scenes", "train", fake_fashion, canvas=64, scene_items=3,
                         scene_items_max=3, limit=4)  # fmt: skip
    assert all(torch.equal(plain[i][1], same[i][1]) for i in range(4))
    with pytest.raises(ValueError, match="items_max"):
        build_dataset("cluttered-fashion-scenes", "train", fake_fashion, scene_items=4, scene_items_max=2, limit=4)
    from dynamicvit.config import RunConfig, validate

    with pytest.raises(ValueError, match="--scene-items-max must be at least --scene-items"):
        validate(RunConfig.of(data="cluttered-fashion-scenes", scene_items=3, scene_items_max=2))
    with pytest.raises(ValueError, match="--scene-items must be 1 to 64"):
        validate(RunConfig.of(scene_items=0))


def test_data_sets_register_once_and_name_their_classes():
    from dynamicvit.data import DATASETS, FASHION_CLASSES, class_names, register_dataset

    assert list(DATASETS)[:2] == ["fashion-mnist", "cluttered-fashion-mnist"]
    with pytest.raises(ValueError, match="'coco' is already registered"):
        register_dataset(DATASETS["coco"])
    assert class_names(10, "cluttered-fashion-boxes") == FASHION_CLASSES
    assert class_names(11, "cluttered-fashion-scenes") is None  # another number of classes: no names
    assert class_names(10, "imagefolder") is None  # a folder's classes are its own


def test_cluttered_item_mask_is_the_items_own_pixels(fake_fashion):
    ds = ClutteredFashionMNIST("train", fake_fashion, canvas=48, distractors=3, seed=1)
    canvas, _, (y, x) = ds.render(5)
    mask = ds.item_mask(5)
    assert mask.shape == (48, 48) and mask.sum() == (ds.images[5] > 0).sum()
    assert mask[y : y + 28, x : x + 28].sum() == mask.sum()  # nothing outside the item's square
    assert (canvas[mask] >= ds.images[5][ds.images[5] > 0]).all()  # the item is drawn where the mask says


def test_items_of_varying_scale(fake_fashion):
    """--item-scale 2: items from ½× to 2× (so their token counts vary several-fold), the mask follows the
    resized item, canvases are reproducible, and a scale whose items do not fit is refused."""
    from dynamicvit.data import build_dataset

    data = build_dataset("cluttered-fashion-mnist", "train", fake_fashion, canvas=64, distractors=0,
                         item_scale=2.0, limit=64)  # fmt: skip
    sides = [data.item_image(i).shape[0] for i in range(64)]
    assert 14 <= min(sides) < 20 and 40 < max(sides) <= 56
    for i in range(4):
        canvas, _, (y, x) = data.render(i)
        mask = data.item_mask(i)
        assert mask.any() and not mask[:y].any() and not mask[:, :x].any()
        assert bool((canvas[mask] > 0).all())  # item pixels are ink (no distractors here)
    assert np.array_equal(data.render(3)[0], data.render(3)[0])
    plain = build_dataset("cluttered-fashion-mnist", "train", fake_fashion, canvas=64, distractors=0, limit=4)
    assert all(plain.item_image(i).shape == (28, 28) for i in range(4))
    with pytest.raises(ValueError, match="fit its items"):
        build_dataset("cluttered-fashion-mnist", "train", fake_fashion, canvas=48, item_scale=2.0, limit=4)


@pytest.mark.promise(
    "bad input",
    "a cluttered set's options that do not go together → `--distractors-max must be at least --distractors (3), "
    "got 1`, `--item-size 40 and --item-scale 1.5 make items up to 60 pixels: more than the 48-pixel --canvas`",
)
def test_the_cluttered_sets_check_their_own_options_together():
    """Each in range, together impossible: the set's own ``check`` names them as flags before any work."""
    from dynamicvit.config import RunConfig, validate

    with pytest.raises(ValueError, match=r"^--distractors-max must be at least --distractors \(3\), got 1$"):
        validate(RunConfig.of(distractors=3, distractors_max=1), training=False)
    with pytest.raises(ValueError, match="^--item-size 40 and --item-scale 1.5 make items up to 60 pixels: more than"):
        validate(RunConfig.of(canvas=48, item_size=40, item_scale=1.5), training=False)
    validate(
        RunConfig.of(data="cluttered-fashion-scenes", canvas=48, item_size=40, item_scale=1.5), training=False
    )  # not its knobs
