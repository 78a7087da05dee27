"""The task registry: name → :class:`~dynamicvit.tasks.base.Task`. Each task module registers its task
when imported, so this module depends on no task and every layer above can read the registry."""

from __future__ import annotations

from torch import nn

from dynamicvit.core.registry import Registry
from dynamicvit.tasks.base import Task

__all__ = ["DEFAULT_TASK", "TASKS", "get_task", "register_task", "task_of"]

TASKS: Registry[Task] = Registry("task")

DEFAULT_TASK = "classify"  # the task of a model without a ``task`` attribute (a plain classifier)


def register_task(task: Task) -> Task:
    """Add ``task`` to :data:`TASKS` under its name (the command line's ``--task`` choices read it)."""
    return TASKS.register(task.name, task)


def get_task(name: str) -> Task:
    """The registered task called ``name``, or a one-line ``ValueError`` listing the tasks."""
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"--task must be one of {', '.join(TASKS)}, got {name!r}") from None


def task_of(model: nn.Module) -> Task:
    """The contract of ``model``: the task its ``task`` attribute names (a plain classifier has none)."""
    return get_task(getattr(model, "task", DEFAULT_TASK))
