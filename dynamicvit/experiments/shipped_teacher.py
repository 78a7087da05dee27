"""The demo's dense teacher, shipped with the package so that the demo starts from a trained model, as a user
with a pretrained one would: its weights and saved config (``assets/demo_teacher.pth``) and how it was made –
the command, commit, machine and date, its training seconds and its logged steps and epochs
(``assets/demo_teacher.json``). ``dynamicvit demo --train-teacher`` trains it afresh;
``scripts/ship_demo_teacher.py`` writes these files from such a run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dynamicvit.config import RunConfig, changed_settings
from dynamicvit.core.files import atomic_save, atomic_write, atomic_write_text
from dynamicvit.core.provenance import provenance
from dynamicvit.experiments.report import read_jsonl
from dynamicvit.weights.checkpoint import read_checkpoint

__all__ = ["ASSETS", "shipped_teacher", "ship_teacher", "unpack_teacher"]

ASSETS = Path(__file__).resolve().parent / "assets"
_NAME = "demo_teacher"


def shipped_teacher(cfg: RunConfig, assets: Path | None = None) -> Path | None:
    """The shipped teacher's weights when they were trained with ``cfg``'s settings (all but those a resumed
    run may change: folders, progress, workers; :func:`~dynamicvit.config.changed_settings`), else None (no
    file, or another recipe or data)."""
    assets = ASSETS if assets is None else assets
    weights, record = assets / f"{_NAME}.pth", assets / f"{_NAME}.json"
    if not (weights.is_file() and record.is_file()):
        return None
    return None if changed_settings(json.loads(record.read_text())["config"], cfg) else weights


def unpack_teacher(weights: Path, folder: Path) -> dict:
    """Write the shipped teacher into the run ``folder`` as a run trained here would leave it – its weights as
    ``last.pth`` (what ``--teacher-checkpoint`` is given), its logged steps and epochs (what curves read) –
    and return its record (provenance, ``train_seconds``)."""
    record = json.loads(weights.with_suffix(".json").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_write(folder / "last.pth") as tmp:
        shutil.copyfile(weights, tmp)
    for name in ("steps", "metrics"):
        atomic_write_text(folder / f"{name}.jsonl", "".join(json.dumps(line) + "\n" for line in record[name]))
    return record


def ship_teacher(run: Path, seconds: float, command: str, assets: Path | None = None) -> Path:
    """Write the finished dense run in folder ``run`` as the shipped teacher: weights and config without the
    optimiser's state, and its record.

    Args:
        run: a finished ``dynamicvit demo --train-teacher`` teacher run (``last.pth``, ``metrics.jsonl``,
            ``steps.jsonl``).
        seconds: how long it trained.
        command: the command that trained it, for the record.
        assets: where to write (the package's own ``assets`` folder).

    Returns:
        The weights' path.
    """
    state, assets = read_checkpoint(run / "last.pth"), ASSETS if assets is None else assets
    assets.mkdir(parents=True, exist_ok=True)
    weights = assets / f"{_NAME}.pth"
    atomic_save({"model": state["model"], "config": state["config"]}, weights)
    record = {
        "provenance": provenance(command),
        "config": state["config"],
        "train_seconds": seconds,
        "metrics": read_jsonl(run / "metrics.jsonl"),
        "steps": read_jsonl(run / "steps.jsonl"),
    }
    atomic_write_text(weights.with_suffix(".json"), json.dumps(record, indent=1))
    return weights
