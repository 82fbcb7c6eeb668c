"""``qsup enqueue module:func ARGS...``."""

from __future__ import annotations

import json as jsonlib
import math
from collections.abc import Callable
from typing import Annotated, Any

import typer

from qsup.api import Queue
from qsup.cli.common import ConfigFile, DatabaseUrl, Json, print_json, settings
from qsup.encoding import resolve_task
from qsup.errors import ConfigError, TaskDefinitionError


def _parse(arg: str) -> Any:
    """JSON when it parses, else the plain string."""
    try:
        return jsonlib.loads(arg)
    except ValueError:
        return arg


def _task(path: str) -> Callable[..., Any]:
    """The function TASK names; a path that names none is bad usage (exit 2)."""
    try:
        return resolve_task(path)
    except TaskDefinitionError as exc:
        raise ConfigError(f"enqueue: TASK {exc}") from None


def enqueue(
    task: Annotated[str, typer.Argument(help="Task path, module:function.")],
    args: Annotated[
        list[str] | None,
        typer.Argument(help="Arguments, each parsed as JSON, else taken as a string."),
    ] = None,
    queue: Annotated[str | None, typer.Option("--queue", help="Queue name.")] = None,
    priority: Annotated[int | None, typer.Option("--priority", help="Higher runs first.")] = None,
    delay: Annotated[
        float, typer.Option("--delay", min=0, help="Seconds before it may start (>= 0).")
    ] = 0.0,
    unique_key: Annotated[
        str | None,
        typer.Option("--unique-key", help="Return the unfinished task holding this key instead."),
    ] = None,
    json: Json = False,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Enqueue one task and print its id."""
    import os
    import sys

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if not math.isfinite(delay):
        raise ConfigError(f"enqueue: --delay: expected a finite number of seconds, got {delay}")
    cfg = settings(config, database_url=database_url)
    options = {"_queue": queue, "_priority": priority, "_delay": delay, "_unique_key": unique_key}
    q = Queue(config=cfg)
    try:
        ref = q.add_task(
            _task(task),
            *[_parse(a) for a in args or []],
            **{k: v for k, v in options.items() if v is not None},
        )
    except TaskDefinitionError as exc:  # an argument or option the task cannot take
        raise ConfigError(f"enqueue: {exc}") from None
    finally:
        q.close()
    if json:
        print_json({"id": ref.task_id, "state": ref.initial_state})
    else:
        typer.echo(str(ref.task_id))
