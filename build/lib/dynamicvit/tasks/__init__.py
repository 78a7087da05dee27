"""Tasks: each one a :class:`~dynamicvit.tasks.base.Task` in its own module and one line of :data:`TASKS`.
The trainer, evaluation, export and the command line reach a task only through this registry."""

from __future__ import annotations

from torch import nn

from dynamicvit.tasks.base import Task
from dynamicvit.tasks.classify import ClassifyTask
from dynamicvit.tasks.detect import DetectTask
from dynamicvit.tasks.segment import SegmentTask

__all__ = ["TASKS", "Task", "get_task", "register_task", "task_of"]

TASKS: dict[str, Task] = {task.name: task for task in (ClassifyTask(), SegmentTask(), DetectTask())}


def get_task(name: str) -> Task:
    """The registered task called ``name``, or a one-line ``ValueError`` listing the tasks."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"--task must be one of {', '.join(TASKS)}, got {name!r}") from None


def task_of(model: nn.Module) -> Task:
    """The contract of ``model``: the task its ``task`` attribute names (a plain classifier has none)."""
    return get_task(getattr(model, "task", ClassifyTask.name))


def register_task(task: Task) -> Task:
    """Add ``task`` to :data:`TASKS` under its name (the command line's ``--task`` choices read it)."""
    TASKS[task.name] = task
    return task
