"""``qsup enqueue module:func ARGS...``."""

from __future__ import annotations

import json as jsonlib
import math
from collections.abc import Callable
from typing import Annotated, Any

import typer

from qsup.api import Queue
from qsup.cli.common import ConfigFile, DatabaseUrl, Json, print_json, settings
from qsup.cli.options import flag_values, setting_flags
from qsup.encoding import import_task_modules, resolve_task
from qsup.errors import ConfigError, TaskDefinitionError, TaskNotAllowed
from qsup.settings import Config


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


def _check_given(cfg: Config, path: str) -> None:
    """Refuse, before importing it, a task the server's workers would refuse, when this
    shell sees what the server imports (its file, QUEUE_IMPORTS or --import) or its list."""
    from qsup.trust import server_gate

    if not (cfg.imports or cfg.allowed_task_modules):
        return  # nothing to go by (the server may have its --import): the workers decide
    import_task_modules(cfg)  # their @task functions count, as in the server
    refusal = server_gate(cfg).refusal(path)
    if refusal is not None:
        raise ConfigError(f"enqueue: {TaskNotAllowed.__name__}: {refusal}")


def _headers(pairs: list[str]) -> dict[str, str] | None:
    """``--header KEY=VALUE`` pairs as the task's headers (a repeated key: the last wins)."""
    headers: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"enqueue: --header: expected KEY=VALUE, got {pair!r}")
        headers[key] = value
    return headers or None


@setting_flags("imports")
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
    header: Annotated[
        list[str] | None,
        typer.Option(
            "--header",
            metavar="KEY=VALUE",
            help="A header the task reads in current_task.headers (repeatable).",
        ),
    ] = None,
    concurrency_key: Annotated[
        str | None,
        typer.Option(
            "--concurrency-key",
            metavar="KEY",
            help="Key of the queue's key_concurrency limit (see limits.QUEUE).",
        ),
    ] = None,
    json: Json = False,
    config: ConfigFile = None,
    database_url: DatabaseUrl = None,
    **flags: Any,
) -> None:
    """Enqueue one task and print its id."""
    import os
    import sys

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if not math.isfinite(delay):
        raise ConfigError(f"enqueue: --delay: expected a finite number of seconds, got {delay}")
    options = {
        "_queue": queue,
        "_priority": priority,
        "_delay": delay,
        "_unique_key": unique_key,
        "_headers": _headers(header or []),
        "_concurrency_key": concurrency_key,
    }
    cfg = settings(config, database_url=database_url, **flag_values(flags))
    _check_given(cfg, task)
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
