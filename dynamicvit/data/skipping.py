"""Unreadable records (corrupt, truncated or oversized images) are skipped, named once on stderr and counted
across the data loader's worker processes, so one bad file does not end a long run and the epoch's summary
can say how many were skipped."""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
from torch.utils.data import get_worker_info

__all__ = ["UNREADABLE", "SkipCounter", "read_skipping", "skipped_records"]

MAX_LOADER_WORKERS = 256  # the config's bound on --workers
UNREADABLE: tuple[type[BaseException], ...] = (OSError, ValueError, SyntaxError)  # PIL's errors on bad data


class SkipCounter:
    """How many records a data set skipped, in this process and its loader workers: one shared-memory slot
    per worker (slot 0 the main process), so the count survives the workers and needs no lock."""

    def __init__(self) -> None:
        self._slots = torch.zeros(MAX_LOADER_WORKERS + 1, dtype=torch.int64).share_memory_()

    def add(self, records: int = 1) -> int:
        """Count ``records`` skipped records; return this process's count."""
        info = get_worker_info()
        slot = 0 if info is None else info.id + 1
        self._slots[slot] += records
        return int(self._slots[slot])

    @property
    def total(self) -> int:
        return int(self._slots.sum())

    def reset(self) -> None:
        self._slots.zero_()


def skipped_records(dataset) -> int:
    """The records ``dataset`` skipped so far (0 for a set that skips none)."""
    counter = getattr(dataset, "skip_counter", None)
    return counter.total if counter is not None else 0


def read_skipping(dataset, index: int, read: Callable, name: Callable):
    """``read(index)``, or, for a record that cannot be read, the next readable one: each skip is counted in
    ``dataset.skip_counter`` and the record (``name(index)``) named on stderr the first time this process meets
    it. A set where nothing can be read is an error."""
    from PIL import Image

    counter = dataset.__dict__.setdefault("skip_counter", SkipCounter())
    named = dataset.__dict__.setdefault("_named_unreadable", set())
    for offset in range(len(dataset)):
        i = (index + offset) % len(dataset)
        try:
            return read(i)
        except (*UNREADABLE, Image.DecompressionBombError) as err:
            seen = counter.add()
            if i not in named:
                named.add(i)
                print(f"dynamicvit: skipped unreadable image {name(i)} ({seen} so far): {err}", file=sys.stderr)
    raise ValueError(f"no image of this set of {len(dataset)} can be read")
