"""A training run's folder: refusing a folder that holds another run, the run's config check on resume,
claiming the folder, and the JSON-lines logs (``metrics.jsonl`` per epoch, ``steps.jsonl`` every 10 updates),
trimmed back to the checkpoint's epoch when a killed run resumes."""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

from dynamicvit.config import RunConfig, check_resumable
from dynamicvit.core.files import CheckpointError, append_text, atomic_write_text, remove_own_temporaries
from dynamicvit.weights.checkpoint import read_checkpoint

__all__ = ["RUN_FILES", "RunFolder", "check_report_folder"]

RUN_FILES = ("last.pth", "metrics.jsonl", "steps.jsonl", "interrupted.pth")  # what makes a folder hold a run


class RunFolder:
    """The folder ``out_dir`` of one run, seen from process ``rank`` (only rank 0 writes)."""

    def __init__(self, out_dir: str | Path, rank: int = 0) -> None:
        self.path, self.rank = Path(out_dir), rank

    @property
    def checkpoint(self) -> Path:
        """The run's latest training checkpoint."""
        return self.path / "last.pth"

    def held(self) -> list[str]:
        """The run files the folder holds (none: it holds no run)."""
        return [name for name in RUN_FILES if (self.path / name).exists()]

    def check(self, cfg: RunConfig) -> dict | None:
        """Refuse to reuse a folder that holds a run unless resuming (or overwriting one that is a dynamicvit
        run's); return the checkpoint to resume from (its config checked against ``cfg``). Writes nothing."""
        if cfg.run.resume and cfg.run.overwrite:
            raise ValueError("--resume and --overwrite exclude each other")
        if cfg.run.resume and not self.checkpoint.exists():
            raise CheckpointError(f"--resume: no checkpoint at {self.checkpoint}")
        held = self.held()
        if held and not (cfg.run.resume or cfg.run.overwrite):
            raise ValueError(
                f"--out {self.path} already holds a run ({', '.join(held)}); "
                "pass --resume to continue it or --overwrite to start over"
            )
        if held and cfg.run.overwrite:
            self._check_ours(held)
        state = read_checkpoint(self.checkpoint) if cfg.run.resume else None
        if state is not None:
            check_resumable(state, cfg, self.checkpoint)
        return state

    def _check_ours(self, held: list[str]) -> None:
        """Before ``--overwrite`` deletes ``held``: each must be what a dynamicvit run writes (a checkpoint
        with its config, JSON-lines logs with epochs), else the folder is someone else's."""
        for name in held:
            path = self.path / name
            if name.endswith(".pth"):
                state = read_checkpoint(path)
                ours = isinstance(state, dict) and isinstance(state.get("config"), dict)
            else:
                first = path.read_text(errors="replace").partition("\n")[0]
                ours = first == "" or _epoch(first) != float("inf")
            if not ours:
                raise ValueError(
                    f"--overwrite: {path} was not written by a dynamicvit run; choose another --out "
                    "or remove the file yourself"
                )

    def claim(self, overwrite: bool, held: list[str]) -> None:
        """Once data and models are built (so a setup error leaves the folder as it was): remove the
        temporary files of killed writes and, with ``overwrite``, the old run's ``held`` files."""
        if self.rank != 0:
            return
        remove_own_temporaries(self.path)
        if overwrite:
            for name in held:
                (self.path / name).unlink()

    def append(self, name: str, records: list[dict]) -> None:
        """Append ``records`` as JSON lines to the log ``name`` (all or none of them: see :func:`append_text`)."""
        append_text(self.path / name, "".join(json.dumps(record) + "\n" for record in records))

    def truncate_logs(self, epoch: int) -> set[int]:
        """Drop log lines of epochs after ``epoch`` (written before a kill, redone now); return the epochs
        ``metrics.jsonl`` still holds."""
        kept: dict[str, list[str]] = {}
        for name in ("metrics.jsonl", "steps.jsonl"):
            path = self.path / name
            if path.exists():
                # a line a kill cut short (no JSON) is dropped with the lines of later epochs
                lines = [ln for ln in path.read_text().splitlines() if _epoch(ln) <= epoch]
                atomic_write_text(path, "".join(ln + "\n" for ln in lines))
                kept[name] = lines
        return {json.loads(ln)["epoch"] for ln in kept.get("metrics.jsonl", [])}


def check_report_folder(folder: Path, outputs: Collection[str], resume: bool, overwrite: bool) -> None:
    """The folder of a command that trains several runs and writes a report (``demo``, ``compare``): one that
    holds its ``outputs`` or a training run is refused unless ``resume`` (finished runs are reused, killed
    ones continued) or ``overwrite`` (its runs start over, its outputs are replaced). Writes nothing."""
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    if resume or overwrite or not folder.is_dir():
        return
    held = sorted(p.name for p in folder.iterdir() if p.name in outputs or (p.is_dir() and RunFolder(p).held()))
    if held:
        raise ValueError(
            f"--out {folder} already holds results ({', '.join(held)}); pass --resume to reuse and continue "
            "them or --overwrite to start over"
        )


def _epoch(line: str) -> float:
    """The epoch of a log line; infinity for one that is not a complete JSON record."""
    try:
        return json.loads(line)["epoch"]
    except (ValueError, TypeError, KeyError):
        return float("inf")
