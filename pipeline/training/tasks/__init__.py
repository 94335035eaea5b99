"""The task table: what ``--task`` can name.

``classify``, ``caption``, ``regress``, ``segment`` and ``multilabel`` are built in; another
package adds one with :func:`register` (or an entry point in the ``vidcache.tasks`` group
whose object is called once, the way backbone plug-ins are). A task is one
:class:`~.base.Task` subclass; see ``docs/architecture.md``, "Add a task".
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from vidcache.features.plugins import load_plugins

if TYPE_CHECKING:  # pragma: no cover
    from vidcache.pipeline.training.tasks.base import Task

__all__ = ["ENTRY_POINT_GROUP", "get_task", "register", "task_names", "unregister"]

ENTRY_POINT_GROUP = "vidcache.tasks"
_BUILTIN = (
    ("classify", "vidcache.pipeline.training.tasks.classify:Classify"),
    ("caption", "vidcache.pipeline.training.tasks.caption:Caption"),
    ("regress", "vidcache.pipeline.training.tasks.regress:Regress"),
    ("segment", "vidcache.pipeline.training.tasks.segment:Segment"),
    ("multilabel", "vidcache.pipeline.training.tasks.multilabel:Multilabel"),
)
#: name -> the Task class, or where a built-in one is (imported when first asked for, so
#: that ``--help`` lists the tasks without importing numpy).
_REGISTRY: dict[str, type[Task] | str] = dict(_BUILTIN)
_plugins_loaded = False


def register(task: type[Task], *, replace: bool = False) -> type[Task]:
    """Add ``task`` (a :class:`Task` subclass) to the table under ``task.name``.

    Raises:
        ValueError: no name, or the name is taken and ``replace`` is false.
    """
    from vidcache.pipeline.training.tasks.base import Task

    if not (isinstance(task, type) and issubclass(task, Task)):
        raise ValueError(f"{task!r} is not a Task subclass")
    if not task.name:
        raise ValueError(f"{task.__name__} has no name")
    _load()
    if not replace and task.name in _REGISTRY and _REGISTRY[task.name] is not task:
        raise ValueError(f"a task named {task.name!r} is already registered")
    _REGISTRY[task.name] = task
    return task


def unregister(name: str) -> None:
    """Remove a task (tests that register a toy one clean up with this)."""
    _REGISTRY.pop(name, None)


def _load() -> None:
    """The plug-ins' tasks, once (an entry point's object is a Task subclass, registered,
    or a function that registers some)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    load_plugins(ENTRY_POINT_GROUP, "task", _use)


def _use(loaded) -> None:
    if isinstance(loaded, type):
        register(loaded)
    elif callable(loaded):
        loaded()


def get_task(name: str) -> type[Task]:
    """The registered task called ``name``.

    Raises:
        ValueError: no task has that name (the message lists the known ones).
    """
    _load()
    if name not in _REGISTRY:
        raise ValueError(f"unknown task {name!r}; known: {', '.join(task_names())}")
    found = _REGISTRY[name]
    if isinstance(found, str):  # a built-in one, imported now
        module, attribute = found.split(":")
        found = _REGISTRY[name] = getattr(importlib.import_module(module), attribute)
    return found


def task_names() -> list[str]:
    """The registered tasks, built-in ones first, in the order ``--help`` lists them."""
    _load()
    return list(_REGISTRY)
