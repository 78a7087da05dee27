"""The training batches of one process: images split across ranks without overlap, the same number of steps
on every rank (or DDP would wait forever on the rank with more), reshuffled each epoch."""

from __future__ import annotations

import itertools

import torch
from torch.utils.data import DataLoader, DistributedSampler, IterableDataset

__all__ = ["EpochLoader"]


class EpochLoader:
    """Batches of ``batch_size`` for rank ``rank`` of ``world``; ``len()`` is the steps of an epoch.

    An indexed set goes through a ``DistributedSampler`` (shuffled with ``seed``, the tail that does not fill a
    global batch dropped); a set of shards (:class:`dynamicvit.data.webdataset.ShardedImages`) splits itself
    by rank and loader worker and says how many full batches every rank can take. Loader workers persist
    across epochs and batches go to pinned memory when the run is on a GPU.
    """

    def __init__(
        self, dataset, batch_size: int, rank: int, world: int, workers: int, seed: int, device: torch.device
    ) -> None:
        options = {
            "batch_size": batch_size,
            "num_workers": workers,
            "drop_last": True,
            "pin_memory": device.type == "cuda",
            "persistent_workers": workers > 0,
            "collate_fn": getattr(dataset, "collate_fn", None),  # detection sets: lists of targets
        }
        self.sampler = None
        if isinstance(dataset, IterableDataset):
            self.dataset = dataset.for_rank(rank, world)
            self.steps = self.dataset.steps(batch_size, workers)  # the fewest any rank can take
            self.loader = DataLoader(self.dataset, **options)
        else:
            self.dataset = dataset
            self.sampler = DistributedSampler(
                dataset, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=True
            )
            self.loader = DataLoader(dataset, sampler=self.sampler, **options)
            self.steps = len(self.loader)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        return itertools.islice(self.loader, self.steps)

    def set_epoch(self, epoch: int) -> None:
        """Draw epoch ``epoch``'s order (the sampler's is the same on every rank; shards shuffle per rank)."""
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        else:
            self.dataset.set_epoch(epoch)
