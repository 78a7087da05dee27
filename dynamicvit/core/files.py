"""Writing files safely: a writable-path check before any work, and atomic writes (a reader sees the old
file or the new one, never half of one), with the fault-injection hook the kill-and-resume tests use; and
the error for a checkpoint that cannot be read or does not fit."""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointError", "atomic_save", "check_writable", "fault_point"]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model."""


_FAULTS: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Fault-injection hook for the kill-and-resume tests: with ``DYNAMICVIT_FAULT=name:n`` in the
    environment, the n-th pass through ``name`` kills this process with SIGKILL. No-op otherwise."""
    spec = os.environ.get("DYNAMICVIT_FAULT")
    if not spec or spec.rsplit(":", 1)[0] != name:
        return
    _FAULTS[name] = _FAULTS.get(name, 0) + 1
    if _FAULTS[name] == int(spec.rsplit(":", 1)[1]):
        os.kill(os.getpid(), signal.SIGKILL)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to a temp file in the same folder, flushed to disk, then renamed over ``path``:
    a reader sees the old file or the new one, never a half-written one (a killed write leaves a
    hidden ``.tmp`` file that the next run removes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            fault_point("save")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_writable(path: str | os.PathLike, what: str) -> None:
    """Raise a ``ValueError`` naming ``what`` unless a file can be written at ``path``: its nearest
    existing ancestor must be a writable folder (missing folders are created later). Writes nothing."""
    folder = Path(path).absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ValueError(f"cannot write to {what} {path}: {folder} is not a writable folder")
