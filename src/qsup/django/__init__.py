"""Django: ``qsup.django.TaskBackend`` for ``django.tasks`` and, with ``qsup.django`` in
``INSTALLED_APPS``, ``manage.py qsup serve`` (SPEC §17). Nothing imports Django until used."""

from __future__ import annotations

from typing import Any

__all__ = ["QsupTask", "TaskBackend"]


def __getattr__(name: str) -> Any:
    if name == "TaskBackend":
        from qsup.django.backend import TaskBackend

        return TaskBackend
    if name == "QsupTask":
        from qsup.django.task import QsupTask

        return QsupTask
    raise AttributeError(f"module 'qsup.django' has no attribute {name!r}")
