"""The task filter options, declared once: ``qsup task list``, ``qsup task cancel`` and
``qsup queue retry`` take the same ``--state --queue --name --since --until --limit --before``
(:mod:`qsup.task_filter` parses them), and bulk commands confirm the same way."""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Annotated, Any, TypeVar

import psycopg
import typer

from qsup.cli.options import with_options
from qsup.errors import ConfigError
from qsup.task_filter import TaskFilter, parse_filter
from qsup.task_ids import parse_task_id, resolve_task_id

F = TypeVar("F", bound=Callable[..., Any])
NAMES = ("state", "queue", "name", "since", "until", "limit", "before")
_WHEN = "a duration ago (90s, 30m, 1h, 2d, 1w) or an ISO date/time"


def _option(name: str, annotation: Any, default: Any, option: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[annotation, option],
    )


def filter_options(states: tuple[str, ...], limit: int | None) -> Callable[[F], F]:
    """Give a command the filter options (``--state`` among ``states``; ``--limit`` defaults to
    ``limit``, None: every match); their values arrive in its ``**filters``."""
    limit_help = "At most N tasks (the newest)." + ("" if limit else " [default: all]")
    return with_options(
        [
            _option("state", list[str] | None, None, typer.Option(
                "--state", metavar="A,B",
                help=f"Only tasks in these states (repeatable or comma-separated; default"
                f" and choices: {','.join(states)}).")),
            _option("queue", list[str] | None, None, typer.Option(
                "--queue", metavar="A,B",
                help="Only tasks of these queues (repeatable or comma-separated).")),
            _option("name", str | None, None, typer.Option(
                "--name", metavar="GLOB",
                help="Only tasks whose name (module:function) matches: * any text, ? one"
                " character (app.tasks:send_*).")),
            _option("since", str | None, None, typer.Option(
                "--since", metavar="WHEN", help=f"Only tasks enqueued since WHEN: {_WHEN}.")),
            _option("until", str | None, None, typer.Option(
                "--until", metavar="WHEN", help=f"Only tasks enqueued before WHEN: {_WHEN}.")),
            _option("limit", int | None, limit, typer.Option(
                "--limit", metavar="N", help=limit_help)),
            _option("before", str | None, None, typer.Option(
                "--before", metavar="ID",
                help="Next page: only tasks older than this id (the last one shown; a full id"
                " is found at once, a short one needs a scan).")),
        ]
    )  # fmt: skip


def given(filters: dict[str, Any], default_limit: int | None) -> bool:
    """Whether any filter option was given (a default ``--limit`` is not one)."""
    return any(
        filters[name] not in (None, [])
        for name in NAMES
        if name != "limit" or filters[name] != default_limit
    )


def selection(filters: dict[str, Any], states: tuple[str, ...]) -> TaskFilter:
    """The filter the options describe, checked before any connection: ConfigError (exit 2)
    names a bad option. A ``--before`` id is resolved later, by :func:`page_of`."""
    if filters["before"]:
        parse_task_id(filters["before"])
    return parse_filter(
        state=filters["state"],
        queue=filters["queue"],
        name=filters["name"],
        since=filters["since"],
        until=filters["until"],
        limit=filters["limit"],
        allowed=states,
    )


def page_of(conn: psycopg.Connection[Any], chosen: TaskFilter, before: str | None) -> TaskFilter:
    """``chosen`` after the ``--before`` id (a short id is looked up)."""
    return replace(chosen, before=resolve_task_id(conn, before)) if before else chosen


def confirm(question: str, yes: bool, command: str) -> None:
    """Ask before a bulk change; without a terminal on stdin only ``--yes`` goes ahead (a
    script never hangs on a prompt)."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise ConfigError(
            f"{command}: {question[0].lower()}{question[1:-1]}: confirm with --yes"
            " (stdin is not a terminal)"
        )
    typer.confirm(question, abort=True)


Yes = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
