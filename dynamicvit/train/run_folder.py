"""A training run's folder: refusing a folder that holds another run, the run's config check on resume,
claiming the folder, and the JSON-lines logs (``metrics.jsonl`` per epoch, ``steps.jsonl`` every 10 updates),
trimmed back to the checkpoint's epoch when a killed run resumes."""

from __future__ import annotations

import json
from pathlib import Path

from dynamicvit.core.files import CheckpointError, check_writable
from dynamicvit.train.config import TrainConfig, check_resumable
from dynamicvit.weights.checkpoint import read_checkpoint

__all__ = ["RUN_FILES", "RunFolder"]

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

    def check(self, cfg: TrainConfig) -> dict | None:
        """Refuse to reuse a folder that holds a run unless resuming (or overwriting); check that it is
        writable; return the checkpoint to resume from (its config checked against ``cfg``). Writes nothing."""
        if cfg.resume and cfg.overwrite:
            raise ValueError("--resume and --overwrite exclude each other")
        if cfg.resume and not self.checkpoint.exists():
            raise CheckpointError(f"--resume: no checkpoint at {self.checkpoint}")
        held = self.held()
        if held and not (cfg.resume or cfg.overwrite):
            raise ValueError(
                f"--out {self.path} already holds a run ({', '.join(held)}); "
                "pass --resume to continue it or --overwrite to start over"
            )
        state = read_checkpoint(self.checkpoint) if cfg.resume else None
        if state is not None:
            check_resumable(state, cfg, self.checkpoint)
        if self.rank == 0:
            check_writable(self.checkpoint, "--out")
        return state

    def claim(self, overwrite: bool, held: list[str]) -> None:
        """Once data and models are built (so a setup error leaves the folder as it was): create the
        folder, remove killed checkpoint writes and, with ``overwrite``, the old run's ``held`` files."""
        if self.rank != 0:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        for stale in self.path.glob(".*.tmp"):  # a checkpoint write that was killed
            stale.unlink()
        if overwrite:
            for name in held:
                (self.path / name).unlink()

    def append(self, name: str, records: list[dict]) -> None:
        """Append ``records`` as JSON lines to the log ``name``."""
        with open(self.path / name, "a") as f:
            f.writelines(json.dumps(record) + "\n" for record in records)

    def truncate_logs(self, epoch: int) -> set[int]:
        """Drop log lines of epochs after ``epoch`` (written before a kill, redone now); return the epochs
        ``metrics.jsonl`` still holds."""
        kept: dict[str, list[str]] = {}
        for name in ("metrics.jsonl", "steps.jsonl"):
            path = self.path / name
            if path.exists():
                lines = [ln for ln in path.read_text().splitlines() if json.loads(ln)["epoch"] <= epoch]
                path.write_text("".join(ln + "\n" for ln in lines))
                kept[name] = lines
        return {json.loads(ln)["epoch"] for ln in kept.get("metrics.jsonl", [])}
