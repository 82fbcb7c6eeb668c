"""Which tasks a server's workers run (``allowed_task_modules``), decided from a task's name
alone, before anything is imported.

With the default (an empty list) a server runs what it was given: functions of the modules it
imports (``imports`` / ``--import``) and their submodules, of the package holding its
``--app``, of the modules its schedules name, and the ``@task`` functions registered when it
started (by those imports, wherever they live). A list names the modules exactly; ``["*"]``
runs any importable function. Nothing a row says about itself widens this: anyone with INSERT
on ``queued_tasks`` can write a ``parent_task``, so a child or a workflow step passes the same
rule as any task (a task that enqueues functions from elsewhere has their module imported).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable

from qsup.settings import Config

ANY = "*"


def app_package(app: str) -> str:
    """``pkg.web.main:app`` -> ``pkg``: the tasks of an app usually live beside it."""
    return app.partition(":")[0].split(".")[0]


def given_modules(config: Config, scheduled: Iterable[str] = ()) -> tuple[str, ...] | None:
    """The modules whose functions (and their submodules') may run; None: any."""
    if ANY in config.allowed_task_modules:
        return None
    if config.allowed_task_modules:
        return tuple(config.allowed_task_modules)
    modules = [*config.imports, *([app_package(config.app)] if config.app else [])]
    tasks = [raw.get("task") for raw in config.schedules]
    modules += [t.partition(":")[0] for t in (*tasks, *scheduled) if isinstance(t, str)]
    return tuple(dict.fromkeys(m for m in modules if m))


def in_modules(module: str, modules: Iterable[str]) -> bool:
    return any(module == m or module.startswith(m + ".") for m in modules)


class TaskGate:
    """``refusal(name)``: None when the task may run, else why not (cached per name)."""

    def __init__(self, modules: tuple[str, ...] | None, registered: Collection[str] = ()) -> None:
        self.modules = modules
        self.registered = frozenset(registered)
        # bounded: names come from rows anyone with INSERT could write
        self.refusal: Callable[[str], str | None] = functools.lru_cache(maxsize=4096)(self._refusal)

    def _refusal(self, name: str) -> str | None:
        if self.modules is None or name in self.registered:
            return None
        if in_modules(name.partition(":")[0], self.modules):
            return None
        return f"{name} is not in the server's modules (allowed_task_modules)"


def server_gate(config: Config) -> TaskGate:
    """The gate of a server with ``config`` whose modules this process has imported (a worker
    forked after them, or ``qsup enqueue`` after importing them)."""
    from qsup.api import registered_tasks
    from qsup.scheduler import registered_schedules

    modules = given_modules(config, (s.task for s in registered_schedules()))
    explicit = bool(config.allowed_task_modules)  # a list names the modules exactly
    return TaskGate(modules, () if explicit else registered_tasks())
