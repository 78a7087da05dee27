"""Tasks: each one a :class:`~dynamicvit.tasks.base.Task` in its own module that registers itself in
:data:`~dynamicvit.tasks.registry.TASKS`. The trainer, evaluation, export and the command line reach a
task only through the registry. Importing this package registers every task."""

# importing registers each task, in the order of the --task choices
# isort: off
from dynamicvit.tasks import classify  # noqa: F401
from dynamicvit.tasks import segment  # noqa: F401
from dynamicvit.tasks import detect  # noqa: F401

# isort: on
from dynamicvit.tasks.base import Task
from dynamicvit.tasks.registry import DEFAULT_TASK, TASKS, get_task, register_task, task_of

__all__ = ["DEFAULT_TASK", "TASKS", "Task", "get_task", "register_task", "task_of"]
