"""The package's error types that a command reports in one line (exit status 2 for the user's input or files,
1 for a failed write): kept together, and apart from the code that raises them, so that the command line can
name them without loading the trainer or the checkpoint readers."""

from __future__ import annotations

__all__ = ["CheckpointError", "FolderInUseError", "TrainingError", "WriteError"]


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or does not fit the model."""


class FolderInUseError(ValueError):
    """An output folder another live process holds."""


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. the loss stayed non-finite); the last checkpoint is intact."""


class WriteError(RuntimeError):
    """A file could not be written (no space left, a file-size limit): the message names the file, the cause
    and the free space; the file's previous content is untouched. Not the user's input: exit status 1."""
