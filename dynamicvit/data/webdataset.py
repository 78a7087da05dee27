"""Images with class labels in WebDataset tar shards (``--data wds``), the format large sets are stored and
streamed in: each sample is an image member (``.jpg``, ``.jpeg``, ``.png`` or ``.webp``) and a ``.cls`` member
holding its class index, as ``webdataset.ShardWriter`` writes them.

Shards are read sequentially with the ``webdataset`` library. Every process of a ``torchrun`` job reads its
own shards (shard ``i`` goes to rank ``i mod world``) and each loader worker a fixed part of those, so no
image is read twice in an epoch; the training order is reshuffled every epoch (shard order and a sample
buffer). The samples of each shard are counted once when the set is opened (tar headers and the small
``.cls`` members), which gives every rank the same number of steps per epoch, the number of classes, and
a bad shard as an error before any work. timm's ``wds/`` reader is not used: it needs an ``_info.json`` the
writers do not produce and repeats samples to fill its epochs.
"""

from __future__ import annotations

import copy
import glob
import io
import random
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import IterableDataset, get_worker_info

from dynamicvit.data.registry import DataOptions, DataSet, register_dataset
from dynamicvit.data.skipping import UNREADABLE, SkipCounter
from dynamicvit.data.transforms import image_transform

__all__ = ["IMAGE_KEYS", "ShardedImages", "shard_files"]

IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")
SHUFFLE_BUFFER = 512  # raw (encoded) records held to shuffle within a worker's stream


def shard_files(data_dir: str | None, split: str) -> list[str]:
    """The tar shards of ``split`` (``"train"`` or ``"val"``): ``data_dir/{split}-*.tar`` for a folder, or a
    brace pattern in which ``{split}`` names the split (``/data/in1k-{split}-{0000..0127}.tar``)."""
    import braceexpand

    if data_dir is None:
        raise ValueError("--data wds needs --data-dir: a folder of train-*.tar and val-*.tar shards, or a pattern")
    if Path(data_dir).is_dir():
        files = sorted(glob.glob(str(Path(data_dir) / f"{split}-*.tar")))
        where = f"{data_dir}/{split}-*.tar"
    else:
        if "{split}" not in data_dir:
            raise ValueError(f"--data-dir {data_dir}: a shard pattern names its split with {{split}}")
        where = data_dir.replace("{split}", split)
        files = [f for f in braceexpand.braceexpand(where) if Path(f).is_file()]
    if not files:
        raise ValueError(f"--data-dir: the shard pattern {where} matches no file")
    return files


@dataclass(frozen=True)
class _Shard:
    path: str
    count: int  # samples (keys with an image and a label) the shard holds


def _index(path: str) -> tuple[int, int]:
    """(samples, largest class index) of one shard, from its tar headers and ``.cls`` members."""
    from webdataset.tariterators import base_plus_ext

    keys: dict[str, set[str]] = {}
    top = -1
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                key, ext = base_plus_ext(member.name) if member.isfile() else (None, None)
                if key is None:
                    continue
                ext = ext.lower()
                keys.setdefault(key, set()).add(ext)
                if ext == "cls":
                    top = max(top, int(tar.extractfile(member).read().decode().strip()))
    except (tarfile.TarError, OSError, ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"shard {path} cannot be read as a tar of samples with .cls labels: {err}") from None
    count = sum(1 for exts in keys.values() if "cls" in exts and exts & set(IMAGE_KEYS))
    return count, top


class ShardedImages(IterableDataset):
    """The samples of WebDataset shards as (image tensor, class) pairs, split across ranks and workers.

    ``len()`` is the samples this rank reads; :meth:`for_rank` gives a rank's view, :meth:`steps` the
    number of full batches every rank can take, :meth:`set_epoch` reshuffles (also in persistent workers).
    An unreadable record is skipped, named on stderr and counted (``skip_counter``); a repeat of a readable
    sample of the same worker takes its place so every rank keeps its number of steps.
    """

    in_chans = 3

    def __init__(self, files: list[str], transform, training: bool, seed: int = 0, limit: int | None = None):
        indexed = [(f, *_index(f)) for f in files]
        shards, left = [], limit
        for path, count, _ in indexed:
            take = count if left is None else min(count, left)
            if take:
                shards.append(_Shard(path, take))
                left = None if left is None else left - take
        if not shards:
            raise ValueError(f"no sample with an image ({', '.join(IMAGE_KEYS)}) and a .cls label in {files[0]} ...")
        self.all_shards = shards
        self.num_classes = max(top for _, _, top in indexed) + 1
        self.transform, self.training, self.seed = transform, training, seed
        self.rank, self.world = 0, 1
        self.skip_counter = SkipCounter()
        self._epoch = torch.zeros(1, dtype=torch.int64).share_memory_()

    @property
    def shards(self) -> list[_Shard]:
        """The shards this rank reads: ``rank, rank + world, ...``."""
        return self.all_shards[self.rank :: self.world]

    def __len__(self) -> int:
        return sum(s.count for s in self.shards)

    def for_rank(self, rank: int, world: int) -> ShardedImages:
        """This set as rank ``rank`` of ``world`` reads it."""
        view = copy.copy(self)
        view.rank, view.world = rank, world
        return view

    def steps(self, batch_size: int, workers: int) -> int:
        """Full batches per epoch that every rank can take (each loader worker drops its partial batch)."""
        split = max(workers, 1)
        return min(
            sum(sum(s.count for s in self.for_rank(r, self.world).shards[w::split]) // batch_size for w in range(split))
            for r in range(self.world)
        )

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(epoch)

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        mine = list(self.shards[worker::workers])
        rng = random.Random(hash((self.seed, int(self._epoch), self.rank, worker)))
        if self.training:
            rng.shuffle(mine)
        records = (r for shard in mine for r in self._records(shard))
        return self._decoded(_shuffled(records, rng) if self.training else records)

    def _records(self, shard: _Shard):
        """The raw records of ``shard``, its first ``shard.count``; ``None`` for each one a damaged tar lost."""
        from webdataset.tariterators import tarfile_samples

        errors: list[Exception] = []

        def stop(err: Exception) -> bool:  # a truncated or corrupt tar: the rest of the shard is lost
            errors.append(err)
            return False

        read = 0
        for record in tarfile_samples([{"url": shard.path}], handler=stop):
            if "cls" not in record or not any(k in record for k in IMAGE_KEYS):
                continue  # not a sample (the index did not count it either)
            if read == shard.count:
                return
            read += 1
            yield record
        if errors or read < shard.count:
            lost = f"{shard.path} (records {read + 1} to {shard.count})"
            self._skipped(lost, errors[0] if errors else "shard ended early", shard.count - read)
        yield from [None] * (shard.count - read)

    def _decoded(self, records):
        """Decoded (image, class) pairs, one per record: a readable sample is repeated for each bad one."""
        debt, last = 0, None
        for record in records:
            sample = None if record is None else self._decode(record)
            if sample is None:
                debt += 1
                continue
            last = sample
            yield sample
            while debt:
                debt -= 1
                yield sample
        if debt and last is None:
            raise ValueError(f"no record of the shards {[s.path for s in self.shards]} can be read")
        yield from [last] * debt

    def _decode(self, record: dict) -> tuple[torch.Tensor, int] | None:
        from PIL import Image

        image = next(record[k] for k in IMAGE_KEYS if k in record)  # _records passes samples only
        try:
            label = int(record["cls"].decode().strip())
            with Image.open(io.BytesIO(image)) as picture:
                return self.transform(picture.convert("RGB")), label
        except (*UNREADABLE, Image.DecompressionBombError) as err:
            self._skipped(f"{record.get('__url__')}:{record.get('__key__')}", err)
            return None

    def _skipped(self, name: str, err: Exception | str, records: int = 1) -> None:
        seen = self.skip_counter.add(records)
        print(f"dynamicvit: skipped unreadable record {name} ({seen} so far): {err}", file=sys.stderr)


def _shuffled(samples, rng: random.Random, size: int = SHUFFLE_BUFFER):
    """``samples`` in a random order drawn through a buffer of ``size``."""
    buffer = []
    for sample in samples:
        buffer.append(sample)
        if len(buffer) >= size:
            yield buffer.pop(rng.randrange(len(buffer)))
    rng.shuffle(buffer)
    yield from buffer


def _wds(split: str, o: DataOptions) -> ShardedImages:
    training = split == "train"
    files = shard_files(o.data_dir, "train" if training else "val")
    return ShardedImages(files, image_transform(o, training), training, seed=o.seed, limit=o.limit)


register_dataset(DataSet("wds", _wds))
