"""Timing and memory of callables on one input, interleaved so every variant meets the same machine load:
median seconds per call (CUDA events on a GPU), peak memory, the device to time on, and one result row with
its ratio to a reference and its noise flag."""

from __future__ import annotations

import contextlib
import random
import statistics
import time
import weakref
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = [
    "NOISE_LIMIT",
    "bench_device",
    "device_name",
    "peak_mb",
    "peak_memory_mb",
    "time_callables",
    "time_runs",
    "timing_row",
]


def bench_device(device: str | None = None) -> torch.device:
    """The device to time on: ``device``, else the GPU when there is one, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        found = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r} is no torch device (cpu, cuda, cuda:1, ...)") from None
    if found.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: torch sees no CUDA device here")
    return found


def device_name(device: torch.device) -> str:
    """``cpu``, or the GPU's name (``NVIDIA H200``)."""
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def time_runs(
    fns: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    x: torch.Tensor,
    warmup: int = 3,
    repeats: int = 10,
    grad: bool = False,
) -> dict[str, list[float]]:
    """Seconds of every call of each function, interleaved in a shuffled order per round so
    that drift and cache effects of the previous call hit all alike; under ``inference_mode`` unless
    ``grad`` (training steps)."""
    with contextlib.nullcontext() if grad else torch.inference_mode():
        return _time_runs(fns, x, warmup, repeats)


def _time_runs(fns, x: torch.Tensor, warmup: int, repeats: int) -> dict[str, list[float]]:
    for _ in range(warmup):
        for fn in fns.values():
            fn(x)
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = random.Random(0)
    names = list(fns)
    for _ in range(repeats):
        order.shuffle(names)
        for name in names:
            times[name].append(_seconds(fns[name], x))
    return times


def _seconds(fn: Callable[[torch.Tensor], object], x: torch.Tensor) -> float:
    """Seconds of one call: on a GPU between CUDA events recorded on the current stream around the call
    (the kernels' time, host launch overhead included), else the wall clock."""
    if not x.is_cuda:
        start = time.perf_counter()
        fn(x)
        return time.perf_counter() - start
    begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize(x.device)
    begin.record()
    fn(x)
    end.record()
    end.synchronize()
    return begin.elapsed_time(end) / 1000.0


def time_callables(
    fns: dict[str, Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor, warmup: int = 3, repeats: int = 10
) -> dict[str, float]:
    """Median seconds per call of each function (see :func:`time_runs`)."""
    return {name: statistics.median(t) for name, t in time_runs(fns, x, warmup, repeats).items()}


class _LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of tensors created by ops and still alive, for CPU runs (no allocator stats there)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = self.peak = 0
        self._owned: set[int] = set()

    def _free(self, ptr: int, nbytes: int) -> None:
        self._owned.discard(ptr)
        self.live -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in self._owned:
                ptr, nbytes = t.untyped_storage().data_ptr(), t.untyped_storage().nbytes()
                self._owned.add(ptr)
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._free, ptr, nbytes)
        return out


@torch.inference_mode()
def peak_memory_mb(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
    """Peak memory of one call in MB: the CUDA allocator's peak, or on CPU the peak of live tensors
    the call created (activations; weights and the input are not counted)."""
    return peak_mb(fn, x)


def peak_mb(fn: Callable[[torch.Tensor], object], x: torch.Tensor) -> float:
    if x.is_cuda:
        torch.cuda.reset_peak_memory_stats(x.device)
        base = torch.cuda.memory_allocated(x.device)
        fn(x)
        return (torch.cuda.max_memory_allocated(x.device) - base) / 2**20
    with _LiveTensorBytes() as counter:
        fn(x)
    return counter.peak / 2**20


NOISE_LIMIT = 1.5  # p90 / p50 above which a row's timings are noise-bound


def timing_row(times: list[float], batch: int, dense: list[float]) -> dict:
    """img/s, speed-up over dense, latency percentiles and whether the timings were noisy (p90 over
    :data:`NOISE_LIMIT` × p50: something else competed for the cores)."""
    median = statistics.median(times)
    q = statistics.quantiles(times, n=100, method="inclusive") if len(times) > 1 else [times[0]] * 99
    return {
        "img_per_s": batch / median,
        "speedup": statistics.median(dense) / median,
        "latency_ms": {"p50": 1e3 * median, "p90": 1e3 * q[89], "p99": 1e3 * q[98]},
        "noisy": q[89] > NOISE_LIMIT * median,
    }
