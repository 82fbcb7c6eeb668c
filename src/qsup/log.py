"""loguru set-up: human lines on a terminal, JSON lines with QSUP_LOG_FORMAT=json."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from loguru import logger

if TYPE_CHECKING:
    from loguru import Logger

_TEXT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
    "[{process}] {extra[task]}<level>{message}</level>"
)


# The ``event`` of log lines about a task's lifecycle step, or about a server's [limits] against
# those in force, in JSON logs ``record.extra.event`` (an interface: tests and log pipelines
# select on it, not on the text).
EVENTS = (
    "enqueued",
    "claimed",
    "started",
    "completed",
    "failed",
    "retried",
    "cancelled",
    "worker_died",
    "worker_recycled",
    "timeout",
    "limits_adopted",
    "limits_disagree",
    "limits_none",
)
# One DEBUG line per task per step (enqueued, claimed, started, completed) only when qsup set
# up the logging at DEBUG: a filtered loguru call still costs a microsecond or two per task.
debug_events = False


def event(name: str, task_id: str | None = None) -> Logger:
    """The logger for a line about a lifecycle step (and the task's id, if any)."""
    return logger.bind(event=name, task_id=task_id) if task_id else logger.bind(event=name)


def _task_prefix(record: dict) -> None:  # type: ignore[type-arg]
    task_id = record["extra"].get("task_id")
    record["extra"]["task"] = f"task={task_id} " if task_id else ""


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send logs to stderr; ``fmt`` is ``text`` or ``json`` (one object per line)."""
    global debug_events
    debug_events = logger.level(level.upper()).no <= logger.level("DEBUG").no
    logger.remove()
    logger.configure(patcher=_task_prefix)  # type: ignore[arg-type]
    if fmt == "json":
        logger.add(sys.stderr, level=level.upper(), serialize=True, backtrace=False)
    else:
        logger.add(
            sys.stderr,
            level=level.upper(),
            format=_TEXT,
            backtrace=False,
            diagnose=False,
            colorize=sys.stderr.isatty() and not os.environ.get("NO_COLOR"),
        )
