"""Downloading a released checkpoint safely: into a temporary file, checked (its SHA-256 when the zoo knows
it, then that it is a readable sparse checkpoint with an ImageNet head) before it is cached under its name;
a cached file that fails the same check is an error naming it."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch

from dynamicvit.core.files import CheckpointError, atomic_write
from dynamicvit.weights.checkpoint import is_added_key, read_state_dict
from dynamicvit.weights.zoo import ZOO, ZooEntry, list_models

__all__ = ["cache_path", "check_release_file", "download", "sha256"]


def sha256(path: str | Path) -> str:
    """The hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_release_file(path: Path, entry: ZooEntry) -> str:
    """Raise a :class:`CheckpointError` unless ``path`` is ``entry``'s file: its digest when known, a state dict
    with the predictors' keys and a 1000-class head; return the digest."""
    digest = sha256(path)
    if entry.sha256 and digest != entry.sha256:
        raise CheckpointError(f"{path}: SHA-256 {digest} is not the release's {entry.sha256}")
    weights = read_state_dict(path)
    if not any(is_added_key(k) for k in weights):
        raise CheckpointError(f"{path}: no predictor weights; not a DynamicViT release checkpoint")
    heads = [v for k, v in weights.items() if k.endswith("head.weight") and v.dim() == 2]
    if not heads or heads[0].shape[0] != 1000:
        raise CheckpointError(f"{path}: no 1000-class ImageNet head; not {entry.name}'s checkpoint")
    return digest


def cache_path(name: str, folder: str | Path | None = None) -> Path:
    """Where :func:`download` keeps zoo model ``name``'s file (``folder``, default: torch's hub cache).

    Args:
        name: a zoo name.
        folder: the download folder.

    Returns:
        The file's path (which may not exist yet).
    """
    return Path(folder or Path(torch.hub.get_dir()) / "checkpoints" / "dynamicvit") / f"{name}.pth"


def download(name: str, folder: str | Path | None = None) -> Path:
    """The local file of zoo model ``name``, downloaded into ``folder`` (default: torch's hub cache) the first
    time and checked before it is kept (its SHA-256 printed); a clear error offline.

    Args:
        name: a zoo name (:func:`dynamicvit.weights.zoo.list_models`).
        folder: where to keep the file.

    Returns:
        The checked file.
    """
    entry = ZOO.get(name)
    if entry is None:
        raise ValueError(f"unknown zoo model {name!r}; known: {', '.join(list_models())}")
    path = cache_path(entry.name, folder)
    if path.is_file():
        try:
            check_release_file(path, entry)
        except CheckpointError as err:
            raise CheckpointError(f"the cached file is bad ({err}); delete {path} and download it again") from None
        return path
    with atomic_write(path) as tmp:
        try:
            torch.hub.download_url_to_file(entry.url, str(tmp), progress=False)
        except Exception as err:  # URLError, HTTPError, timeouts, ...
            raise ValueError(
                f"cannot download {entry.name} from {entry.url} ({type(err).__name__}: {err}); download it where "
                f"you are online and pass it with checkpoint_path=FILE (CLI: --checkpoint FILE), or put it at {path}"
            ) from None
        digest = check_release_file(tmp, entry)
    print(f"dynamicvit: downloaded {entry.name} to {path} (sha256 {digest})", file=sys.stderr)
    return path
