"""qsup: a PostgreSQL-backed persistent task queue with a multiprocess supervisor."""

from qsup.api import Queue, TaskFunction, TaskRef, task
from qsup.context import current_task
from qsup.errors import (
    ConfigError,
    DatabaseUnreachable,
    NonRetryableError,
    QsupError,
    Retry,
    TaskDefinitionError,
    TaskFailed,
    TaskNotAllowed,
    TaskNotFound,
    TaskTimeout,
)
from qsup.middleware import add_middleware
from qsup.workflow import chain, group, step
from qsup.workflow_ref import WorkflowRef

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DatabaseUnreachable",
    "NonRetryableError",
    "QsupError",
    "Queue",
    "Retry",
    "TaskDefinitionError",
    "TaskFailed",
    "TaskFunction",
    "TaskNotAllowed",
    "TaskNotFound",
    "TaskRef",
    "TaskTimeout",
    "WorkflowRef",
    "__version__",
    "add_middleware",
    "chain",
    "current_task",
    "group",
    "step",
    "task",
]
