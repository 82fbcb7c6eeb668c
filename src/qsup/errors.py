"""The exception tree. Each CLI-facing error carries the exit code of spec §6."""

from __future__ import annotations


class QsupError(Exception):
    """Base class for every error qsup raises on purpose."""

    exit_code = 1


class ConfigError(QsupError):
    """Bad usage or configuration: names the key, the value and where it came from."""

    exit_code = 2


class DatabaseUnreachable(QsupError):
    """The database could not be reached; the message names the host that was tried."""

    exit_code = 3


class TaskDefinitionError(QsupError, ValueError):
    """A task cannot be enqueued as given (lambda, closure, non-JSON argument, ...)."""


class TaskNotAllowed(TaskDefinitionError):
    """A task outside what its server was given (``allowed_task_modules``): refused by the
    worker before its module is imported, never retried; what ``on_failure`` hooks get."""


class TaskNotFound(QsupError, LookupError):
    """No task matches the id (or id prefix) given."""


class TaskFailed(QsupError):
    """Raised by ``TaskRef.result()`` when the task ended ``failed`` or ``cancelled``."""

    def __init__(self, task_id: object, state: str, error: str | None) -> None:
        self.task_id = task_id
        self.state = state
        self.error = error
        super().__init__(f"task {task_id} {state}: {error or 'no error recorded'}")


class Retry(Exception):  # noqa: N818 - public name chosen for readability: ``raise Retry(delay=5)``
    """Raise inside a task to ask for another attempt, optionally after ``delay`` seconds."""

    def __init__(self, delay: float | None = None, reason: str = "retry requested") -> None:
        self.delay = delay
        self.reason = reason
        super().__init__(reason)


class NonRetryableError(Exception):
    """Raise (or subclass) inside a task to fail it at once, whatever attempts are left."""


class TaskTimeout(Exception):  # noqa: N818 - it is the reason, not an error class of ours
    """Raised inside a task that ran past its timeout."""
