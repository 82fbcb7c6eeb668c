"""What a Django ``TaskError`` names when qsup, not the task, ended an attempt: the worker
was killed (timeout, memory, a crash), the task was cancelled or quarantined."""


class WorkerDied(Exception):  # noqa: N818 - named as qsup's error rows name it
    """The worker running the attempt died (a signal, an exit, a fence)."""


class MemoryLimitExceeded(Exception):  # noqa: N818
    """The worker outgrew ``worker_memory_limit_mb`` and was killed."""


class TaskCancelled(Exception):  # noqa: N818
    """An operator, or a failed dependency, cancelled the task."""


class TaskQuarantined(Exception):  # noqa: N818
    """The task's attempts killed ``max_crashes`` workers: it is not run again."""
