"""Process group, devices, random state and sharded evaluation of training runs (``torchrun``: NCCL on GPUs,
gloo on CPUs; one node or many, with torchrun's rendezvous)."""

from __future__ import annotations

import math
import os
import random

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import IterableDataset, Subset

__all__ = [
    "collective_device",
    "combine_results",
    "dist_info",
    "eval_shard",
    "gather_objects",
    "ranks_in_sync",
    "rng_state",
    "run_device",
    "seed_all",
    "set_rng_state",
]


def run_device() -> torch.device:
    """This process's device: GPU ``LOCAL_RANK`` (torchrun's) when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment. With several processes this selects the
    process's own GPU (``torch.cuda.set_device(LOCAL_RANK)``) *before* creating the group – NCCL then binds
    each rank to its device, and every collective of this module runs there – and initialises the group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not dist.is_initialized():
        device = run_device()
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    if world > 1:
        return dist.get_rank(), dist.get_world_size(), local_rank
    return 0, 1, 0


def collective_device() -> torch.device:
    """Where this rank's collective tensors live: its own GPU under NCCL, else the CPU."""
    return run_device() if dist.get_backend() == "nccl" else torch.device("cpu")


def gather_objects(obj) -> list:
    """``obj`` of every rank, in rank order (a collective: every rank calls it; pickled on the rank's device)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def rng_state() -> dict:
    """Every random generator's state (torch, numpy, Python, and this process's own GPU) as tensors and
    plain values."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state(run_device())
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved (the GPU state onto this process's own GPU)."""
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    random.setstate(state["python"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda[0] if isinstance(cuda, (list, tuple)) else cuda, run_device())


def eval_shard(dataset, rank: int, world: int):
    """Rank ``rank``'s part of an evaluation set: images ``rank, rank + world, ...`` (or, for shards, its
    shards), so the ranks together see every image exactly once, none padded or repeated."""
    if world == 1:
        return dataset
    if isinstance(dataset, IterableDataset):  # a set of shards splits itself
        return dataset.for_rank(rank, world)
    return _Part(dataset, range(rank, len(dataset), world))


class _Part(Subset):
    """A subset that answers for its data set's attributes (``num_classes``, ``collate_fn``, ...)."""

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("dataset", "indices"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


def combine_results(parts: list[dict]) -> dict:
    """One evaluation result from the results of disjoint shards (:func:`eval_shard`): top-1, loss, k-NN
    top-1, GMACs and kept tokens weighted by each shard's images, speed as all images over the slowest
    shard's time. The per-image token distribution is kept when every shard reports the same one (fixed
    budgets) and dropped otherwise."""
    parts = [p for p in parts if p.get("images")]
    images = sum(p["images"] for p in parts)
    out = dict(parts[0]) | {"images": images}
    for key in ("top1", "loss", "knn_top1", "gmacs"):
        if any(p.get(key) is not None for p in parts):
            out[key] = sum(p[key] * p["images"] for p in parts) / images
    if "kept_tokens" in out:
        stages = zip(*(p["kept_tokens"] for p in parts), strict=True)
        out["kept_tokens"] = [
            round(sum(k * p["images"] for k, p in zip(s, parts, strict=True)) / images, 1) for s in stages
        ]
    slowest = max(p["images"] / p["img_per_s"] for p in parts)
    out["img_per_s"] = images / slowest if slowest else math.nan
    if any(p.get("per_image", {}).get("tokens") != parts[0].get("per_image", {}).get("tokens") for p in parts):
        out.pop("per_image", None)
    elif "per_image" in out:
        out["per_image"] = {**out["per_image"], "images": images}
    return out


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def ranks_in_sync(model: nn.Module) -> bool:
    """Whether every rank holds the same weights (checksums all-gathered)."""
    vec = torch.cat([p.detach().float().flatten() for p in model.parameters()])
    checksum = torch.stack([vec.sum(), (vec * vec).sum()]).to(collective_device())  # NCCL: the rank's GPU
    gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, checksum)
    return all(torch.equal(g, gathered[0]) for g in gathered)
