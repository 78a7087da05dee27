"""WebDataset shards and Hugging Face datasets: how ranks and loader workers split them, what a bad record or
a bad folder does."""

from __future__ import annotations

import io
import tarfile

import pytest
import torch
from conftest import make_hf, make_shards, png_bytes

from dynamicvit.data import build_dataset, skipped_records
from dynamicvit.train.distributed import eval_shard
from dynamicvit.train.loaders import EpochLoader


def _labels(loader) -> list[int]:
    return [int(v) for _, y in loader for v in y]


@pytest.mark.parametrize("workers", [0, 2])
def test_shards_split_across_ranks_and_workers_cover_each_image_once(tmp_path, workers):
    data = make_shards(tmp_path / "wds", {"train": [8, 8, 8, 8], "val": [5, 4]})
    train = build_dataset("wds", "train", data_dir=data, img_size=16)
    assert len(train) == 32 and train.num_classes == 32
    seen = []
    for rank in (0, 1):
        loader = EpochLoader(train, 4, rank, 2, workers, 0, torch.device("cpu"))
        loader.set_epoch(0)
        labels = _labels(loader)
        assert len(labels) == len(loader) * 4 == 16
        seen.append(set(labels))
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(32))
    loader.set_epoch(1)
    assert sorted(_labels(loader)) == sorted(seen[1])  # another order, the same images


def test_every_rank_takes_the_same_number_of_steps_on_uneven_shards(tmp_path):
    data = make_shards(tmp_path / "wds", {"train": [8, 8, 3], "val": [2]})
    train = build_dataset("wds", "train", data_dir=data, img_size=16)
    steps = [len(EpochLoader(train, 4, r, 2, 0, 0, torch.device("cpu"))) for r in (0, 1)]
    assert steps == [2, 2]  # rank 0 holds 11 images (2 batches), rank 1 8: both take 2


def test_validation_shards_split_without_repeats(tmp_path):
    data = make_shards(tmp_path / "wds", {"train": [4], "val": [5, 4, 3]})
    val = build_dataset("wds", "test", data_dir=data, img_size=16)
    parts = [_labels(torch.utils.data.DataLoader(eval_shard(val, r, 2), batch_size=4)) for r in (0, 1)]
    assert sorted(parts[0] + parts[1]) == list(range(12)) and len(parts[0]) + len(parts[1]) == len(val)


def test_a_corrupt_record_is_skipped_counted_and_replaced(tmp_path, capsys):
    data = make_shards(tmp_path / "wds", {"train": [6]})
    bad = tmp_path / "wds" / "train-0001.tar"
    with tarfile.open(bad, "w") as tar:
        for name, payload in (
            ("x0.png", png_bytes(0)),
            ("x0.cls", b"3"),
            ("x1.png", b"\x89PNG broken"),
            ("x1.cls", b"4"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    train = build_dataset("wds", "train", data_dir=data, img_size=16)
    labels = [y for _, y in train]
    assert len(labels) == len(train) == 8  # the bad record's place is taken by a readable one
    assert skipped_records(train) == 1 and "x1" in capsys.readouterr().err


def test_hf_dataset_rows_split_by_the_distributed_sampler(tmp_path):
    data = make_hf(tmp_path / "hf")
    train = build_dataset("hfds", "train", data_dir=data, img_size=16)
    assert len(train) == 32 and train.num_classes == 32 and train[0][0].shape == (3, 16, 16)
    seen = [set(_labels(EpochLoader(train, 4, r, 2, 0, 0, torch.device("cpu")))) for r in (0, 1)]
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(32))
    val = build_dataset("hfds", "test", data_dir=data, img_size=16)
    assert len(val) == 9 and len(eval_shard(val, 0, 2)) + len(eval_shard(val, 1, 2)) == 9


def test_parquet_folder(tmp_path):
    import datasets

    make_hf(tmp_path / "hf", train=8, val=3)
    saved = datasets.load_from_disk(str(tmp_path / "hf"))
    for name, part in saved.items():
        (tmp_path / "pq" / "data").mkdir(parents=True, exist_ok=True)
        part.to_parquet(str(tmp_path / "pq" / "data" / f"{name}-00000-of-00001.parquet"))
    val = build_dataset("hfds", "test", data_dir=tmp_path / "pq", img_size=16)
    assert len(val) == 3 and val[2][1] == 2


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: make_shards(d, {"val": [2]}), "matches no file"),
        (lambda d: (d.mkdir(), (d / "train-0000.tar").write_bytes(b"not a tar" * 100))[0], "cannot be read"),
    ],
)
def test_bad_shard_folders_are_named(tmp_path, make, message):
    make(tmp_path / "wds")
    with pytest.raises(ValueError, match=message):
        build_dataset("wds", "train", data_dir=tmp_path / "wds", img_size=16)


def test_hf_dataset_without_image_column_is_named(tmp_path):
    data = make_hf(tmp_path / "hf", train=4, val=2, columns=("picture", "label"))
    with pytest.raises(ValueError, match="no image column.*picture"):
        build_dataset("hfds", "train", data_dir=data, img_size=16)
