"""Process group and random state for training runs (``torchrun``: NCCL on GPUs, gloo on CPUs)."""

from __future__ import annotations

import os
import random

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

__all__ = ["dist_info", "ranks_in_sync", "rng_state", "seed_all", "set_rng_state"]


def dist_info() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment, initialising the group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if world > 1:
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def rng_state() -> dict:
    """Every random generator's state (torch, numpy, Python, CUDA) as tensors and plain values."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def ranks_in_sync(model: nn.Module) -> bool:
    """Whether every rank holds the same weights (checksums all-gathered)."""
    vec = torch.cat([p.detach().float().flatten() for p in model.parameters()])
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    checksum = torch.stack([vec.sum(), (vec * vec).sum()]).to(device)  # NCCL gathers CUDA tensors only
    gathered = [torch.zeros_like(checksum) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, checksum)
    return all(torch.equal(g, gathered[0]) for g in gathered)
