"""loguru set-up: human lines on a terminal, JSON lines with QSUP_LOG_FORMAT=json."""

from __future__ import annotations

import os
import sys

from loguru import logger

_TEXT = (
    "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
    "[{process}] {extra[task]}<level>{message}</level>"
)


def _task_prefix(record: dict) -> None:  # type: ignore[type-arg]
    task_id = record["extra"].get("task_id")
    record["extra"]["task"] = f"task={task_id} " if task_id else ""


def setup_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send logs to stderr; ``fmt`` is ``text`` or ``json`` (one object per line)."""
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
