"""Where a measured figure comes from: the command line, package version, git commit, machine and date,
stored with every result file so a documented number can be traced to the run that measured it."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

import timm
import torch

__all__ = ["describe_machine", "machine", "provenance"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _commit() -> str | None:
    """The git commit of the package's source tree (``None`` for an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _version() -> str | None:
    try:
        return importlib.metadata.version("dynamicvit")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return None


def describe_machine(m: dict) -> str:
    """One line for a :func:`machine` record, for reports."""
    threads = f"{m['torch_threads']} torch thread" + ("s" if m["torch_threads"] != 1 else "")
    return f"{m['cpu']}, {m['cores']} cores ({threads}), torch {m['torch']}, timm {m['timm']}"


def machine() -> dict:
    """CPU model, cores, torch threads, GPU if any, and the Python, torch and timm versions."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": gpu,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
    }


def provenance(command: str | None = None) -> dict:
    """The record stored with a result: command line (default: this process's), version, commit, machine, date.

    Args:
        command: the command line that measured the result.

    Returns:
        ``command``, ``version``, ``commit``, ``machine`` and ``date`` (ISO, UTC).
    """
    return {
        "command": command or " ".join(["dynamicvit", *sys.argv[1:]]),
        "version": _version(),
        "commit": _commit(),
        "machine": machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
