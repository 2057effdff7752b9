"""The tasks: one module each, found by discovery.

A task is a module of this package that defines ``TASK``, a
:class:`~training.tasks.base.TaskSpec`. Adding a task is one new module here plus its
feature service in ``feature_repo/``; nothing else lists the tasks.
"""

from __future__ import annotations

from features.discovery import discover
from features.errors import CustlabError
from training.tasks.base import TaskSpec

# The order the summary and `--task all` take.
_FIRST = ("churn", "propensity", "clv", "lifecycle")


TASKS: dict[str, TaskSpec] = discover(__name__, __path__, "TASK", TaskSpec, _FIRST)


def get_task(name: str) -> TaskSpec:
    """Look up a task spec by name.

    Raises:
        CustlabError: ``name`` is not a known task; the message lists the known ones.
    """
    if name not in TASKS:
        raise CustlabError(f"unknown task '{name}'; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


__all__ = ["TASKS", "TaskSpec", "get_task"]
