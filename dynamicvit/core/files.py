"""Files written safely: a writable-path check before any work; atomic writes (a reader sees the old file
or the new one, never half of one) with the process's normal permissions; an exclusive lock that makes a
run folder one run's own; the fault-injection hook of the kill-and-resume tests; and the error for a
checkpoint that cannot be read or does not fit."""

from __future__ import annotations

import datetime
import errno
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from dynamicvit.core.errors import CheckpointError, FolderInUseError, WriteError

__all__ = [
    "LOCK_NAME",
    "TEMP_PREFIX",
    "CheckpointError",
    "FolderInUseError",
    "atomic_save",
    "atomic_write",
    "atomic_write_text",
    "check_writable",
    "fault_point",
    "folder_lock",
    "remove_own_temporaries",
]

TEMP_PREFIX = ".dynamicvit-"  # every temporary file this package writes starts so (and nothing else it removes)
LOCK_NAME = ".dynamicvit.lock"


_FAULTS: dict[str, int] = {}


def fault_point(name: str) -> None:
    """Fault-injection hook for the kill-and-resume tests: with ``DYNAMICVIT_FAULT=name:n`` in the
    environment, the n-th pass through ``name`` kills this process with SIGKILL; ``name:n:r`` only the
    process of rank ``r`` (torchrun's ``RANK``). No-op otherwise."""
    spec = os.environ.get("DYNAMICVIT_FAULT", "").split(":")
    if spec[0] != name or (len(spec) > 2 and spec[2] != os.environ.get("RANK", "0")):
        return
    _FAULTS[name] = _FAULTS.get(name, 0) + 1
    if _FAULTS[name] == int(spec[1]):
        os.kill(os.getpid(), signal.SIGKILL)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder (same extension, so writers that read it work) and,
    when the block ends without an error, give it the process's normal permissions and rename it over
    ``path``. On an error the temporary file is removed and ``path`` keeps its old content (or stays absent).

    Args:
        path: the file to write.

    Yields:
        The temporary path to write to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=f"-{path.name}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide the file from a shared folder's readers
        os.replace(tmp, path)
    except (OSError, RuntimeError) as err:
        cause = _write_failure(err, tmp)
        if cause is None:
            raise
        tmp.unlink(missing_ok=True)  # the space the failed write took is free again
        raise _write_error(path, cause) from err
    finally:
        tmp.unlink(missing_ok=True)


def append_text(path: str | os.PathLike, text: str) -> None:
    """Append ``text`` to ``path`` (a log). A write that runs out of space is undone – the file cut back to its
    old length, so no half line stays – and raised as a one-line :class:`WriteError`.

    Args:
        path: the file to append to (created when absent).
        text: what to append.
    """
    path = Path(path)
    size = path.stat().st_size if path.exists() else 0
    try:
        with open(path, "a") as f:
            f.write(text)
    except OSError as err:
        cause = _write_failure(err, path)
        if cause is None:
            raise
        os.truncate(path, size)
        raise _write_error(path, cause) from err


def _write_error(path: Path, cause: str) -> WriteError:
    """The one-line error of a write to ``path`` that failed for ``cause``, with the space left there."""
    return WriteError(f"cannot write {path}: {cause} ({_amount(shutil.disk_usage(path.parent).free)} free there)")


def _amount(size: int) -> str:
    """``size`` bytes in words: ``"988 KiB"``, ``"37 MiB"``, ``"1.2 GiB"``."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}" if unit == "GiB" else f"{size // scale} {unit}"
    return f"{size // 2**10} KiB"


def _write_failure(err: BaseException, tmp: Path) -> str | None:
    """The cause of a failed write in words (``"no space left on the device"``, ``"file too large"``), or
    ``None`` for an error that is not the storage's. torch's zip writer reports a short write as a
    ``RuntimeError`` without the errno, so its cause is read off the file-size limit and the free space."""
    if isinstance(err, OSError):
        return {
            errno.ENOSPC: "no space left on the device",
            errno.EFBIG: "file too large",
            errno.EDQUOT: "disk quota exceeded",
        }.get(err.errno)
    if "inline_container" not in str(err) and "write" not in str(err).lower():
        return None
    try:
        import resource  # POSIX only
    except ImportError:
        resource = None
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0] if resource else -1
    written = tmp.stat().st_size if tmp.exists() else 0
    if resource and limit != resource.RLIM_INFINITY and written >= limit - 2**16:
        return "file too large (over this process's file-size limit)"
    return "no space left on the device" if shutil.disk_usage(tmp.parent).free < 2**24 else None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path) as tmp:
        tmp.write_text(text)


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` atomically and flushed to disk (a killed write leaves only a temporary file, which
    the next run in that folder removes)."""
    with atomic_write(path) as tmp, open(tmp, "wb") as f:
        torch.save(obj, f)
        fault_point("save")
        f.flush()
        os.fsync(f.fileno())


def remove_own_temporaries(folder: str | os.PathLike) -> None:
    """Remove the temporary files a killed write of this package left in ``folder`` (nothing else)."""
    for stale in Path(folder).glob(f"{TEMP_PREFIX}*"):
        if stale.is_file():
            stale.unlink()


def check_writable(path: str | os.PathLike, what: str) -> None:
    """Raise a ``ValueError`` naming ``what`` unless a file can be written at ``path``: not a folder, and its
    nearest existing ancestor a writable folder (missing folders are created later). Writes nothing."""
    if Path(path).is_dir():
        raise ValueError(f"{what} {path} is a folder; give a file name")
    folder = Path(path).absolute().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ValueError(f"cannot write to {what} {path}: {folder} is not a writable folder")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _holder(lock: Path) -> dict:
    try:
        return json.loads(lock.read_text())
    except (OSError, ValueError):
        return {}


def _take(lock: Path) -> bool:
    """Create ``lock`` exclusively with this process's id, host and start time; False if it exists."""
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.datetime.now().isoformat(" ", "seconds")}
    with os.fdopen(fd, "w") as f:
        json.dump(me, f)
    return True


_HELD: dict[Path, int] = {}  # folders this process holds, with how many holders inside it


@contextmanager
def folder_lock(folder: str | os.PathLike, flag: str = "--out") -> Iterator[Path]:
    """Hold ``folder`` (created if missing; removed again if it is still empty at the end) for this process
    while the block runs. Holders inside one process share the lock.

    A folder that cannot be written is a ``ValueError`` naming ``flag``; a lock left by a dead process on
    this host is reported on stderr and taken over; a live holder (or one on another host) is a
    :class:`FolderInUseError` naming it. All raised before any work.

    Args:
        folder: the output folder.
        flag: the command-line flag that named it, for the message.

    Yields:
        The folder.
    """
    folder = Path(folder).absolute()
    check_writable(folder / LOCK_NAME, flag)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / LOCK_NAME
    if not _HELD.get(folder):
        _acquire(lock, flag)
    _HELD[folder] = _HELD.get(folder, 0) + 1
    try:
        yield folder
    finally:
        _HELD[folder] -= 1
        if not _HELD[folder]:
            del _HELD[folder]
            if _holder(lock).get("pid") == os.getpid():
                lock.unlink(missing_ok=True)
            if created and not any(folder.iterdir()):
                folder.rmdir()


def _acquire(lock: Path, flag: str) -> None:
    """Take ``lock``, taking over one of a dead process on this host; else name the holder."""
    while not _take(lock):
        held = _holder(lock)
        pid, host = held.get("pid"), held.get("host")
        # this process does not hold it (see _HELD), so a lock with its own id is a reused id's leftover
        if host == socket.gethostname() and isinstance(pid, int) and (pid == os.getpid() or not _alive(pid)):
            print(f"dynamicvit: {flag} {lock.parent}: taking over the lock of ended process {pid}", file=sys.stderr)
            lock.unlink(missing_ok=True)
            continue
        raise FolderInUseError(
            f"{flag} {lock.parent} is in use by process {pid} on {host} since {held.get('since')} "
            f"(if that process is gone, delete {lock})"
        )
